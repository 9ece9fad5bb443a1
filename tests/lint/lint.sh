#!/usr/bin/env bash
# Static checks over our own C sources: cppcheck with zero findings, and clang-format clean.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
cd "$CHUNKFLY_SRC"
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.c' -o -name '*.h')
[ ${#files[@]} -gt 0 ] || skip "no sources"
rc=0
if command -v cppcheck >/dev/null; then
    incs=()
    for d in $(find . -path ./build\* -prune -o -type d -name include -print); do incs+=(-I "$d"); done
    if ! cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability,performance \
        --inline-suppr --suppress=missingIncludeSystem --suppress=unknownMacro \
        -D__GNUC__ -D_GNU_SOURCE -DCHUNKFLY_VERSION=\"0\" "${incs[@]}" "${files[@]}" 2>"$T/cppcheck"; then
        cat "$T/cppcheck"; echo "FAIL: cppcheck findings above"; rc=1
    fi
else
    echo "cppcheck not installed: skipped that part"
fi
if command -v clang-format >/dev/null; then
    if ! clang-format --dry-run --Werror "${files[@]}" 2>"$T/fmt"; then
        grep -E '^[^ ].*: (error|warning)' "$T/fmt" | cut -d: -f1 | sort -u | head -20
        echo "FAIL: files above need clang-format -i"; rc=1
    fi
fi
[ $rc = 0 ] && echo "lint clean: ${#files[@]} files"
exit $rc
