#!/usr/bin/env bash
# chunkfly convert --all REGISTRY against a real docker-registry with several repositories and
# tags (two umoci images pushed with skopeo, then tagged into more repositories with
# cross-repository mounts: 107 repositories, so the catalog takes two pages). Checks:
#  - --repo-filter: only matching repositories; tags ending in -nydus are never sources;
#  - every tag converted to repo:tag-nydus (its annotation records the source digest), a table;
#  - a second run converts nothing and pushes nothing; a changed source tag is converted again;
#  - --dry-run lists without converting; --shard I/N for N = 3: the shards' listings are
#    pairwise disjoint and their union is the whole listing (paginated catalog included);
#  - a registry with token auth: the catalog token (registry:catalog:*) with credentials, a
#    clear refusal without.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/lib/nydus_image.sh"
command -v umoci >/dev/null || skip "umoci not installed"
command -v skopeo >/dev/null || skip "skopeo not installed"
need_bin chunkfly
CF=$CHUNKFLY_BIN/chunkfly

cd "$T" || exit 1
umoci init --layout oci >/dev/null
for i in 1 2; do
    mkdir -p "$T/l$i/etc"; echo "image $i" >"$T/l$i/etc/which"; head -c 50000 /dev/urandom >"$T/l$i/data"
    tar --numeric-owner -C "$T/l$i" -cf "$T/l$i.tar" .
    umoci new --image "oci:img$i" >/dev/null
    umoci raw add-layer --image "oci:img$i" "$T/l$i.tar" >/dev/null
done
REGISTRY_LOG="{level: info, fields: {service: registry}}" start_registry 127.0.0.1 "" reg
REG=$REGISTRY
RDIR=$REGISTRY_DIR
push() { skopeo copy -q --dest-tls-verify=false "oci:$T/oci:$1" "docker://$REG/$2" || fail "push $2"; }
push img1 src/img1:v1
push img2 src/img2:v1
# retag REPO:TAG... < "img1|img2 ...": more repositories and tags of the same two images, the
# blobs mounted across repositories and the manifest PUT, over one keep-alive connection (303
# requests with curl would take most of this test's time)
retag() {
    python3 - "$REG" "$@" <<'PY2' || fail "retag $*"
import http.client, json, sys
reg, pairs = sys.argv[1], sys.argv[2:]
c = http.client.HTTPConnection(reg)
def req(method, path, body=None, headers={}):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse(); data = r.read()
    if r.status >= 300: raise SystemExit("%s %s: %d %s" % (method, path, r.status, data[:200]))
    return data
mt = "application/vnd.oci.image.manifest.v1+json"
for p in pairs:
    img, ref = p.split("=")
    repo, tag = ref.rsplit(":", 1)
    m = req("GET", "/v2/src/%s/manifests/v1" % img, headers={"Accept": mt})
    j = json.loads(m)
    for d in [j["config"]["digest"]] + [l["digest"] for l in j["layers"]]:
        req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=src/%s" % (repo, d, img))
    req("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=m, headers={"Content-Type": mt})
PY2
}
retag img1=app/one:v1 img2=app/one:v2 img1=app/one:stray-nydus img2=app/two:latest \
    img1=lib/three:v1 img1=other/skip:v1
# 101 more repositories: the catalog answers 100 per page
retag $(for i in $(seq -w 0 100); do echo "img1=pad/r$i:v1"; done)

all() { # all LOG ARGS...: chunkfly convert --all, the table on stdout
    "$CF" convert --work-dir "$T/work" --all "$REG" "${@:2}" 2>"$1"
}
rows() { awk 'NR > 1 {print $1, $2, $3}' | sort; }
FILTER='^(app|lib)/'

note "first run: the filtered repositories converted, a table"
t0=$(date +%s%N)
all "$T/a1.log" --repo-filter "$FILTER" >"$T/t1" || fail "convert --all: $(cat "$T/a1.log")"
note "first --all run: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cat "$T/t1"
head -1 "$T/t1" | grep -qE '^SOURCE +TARGET +STATUS +SECONDS$' || fail "no table header"
rows <"$T/t1" >"$T/r1"
cat >"$T/r1.want" <<EOF
$REG/app/one:v1 $REG/app/one:v1-nydus converted
$REG/app/one:v2 $REG/app/one:v2-nydus converted
$REG/app/two:latest $REG/app/two:latest-nydus converted
$REG/lib/three:v1 $REG/lib/three:v1-nydus converted
EOF
diff -u "$T/r1.want" "$T/r1" || fail "first run table"
grep -q "4 converted, 0 skipped (converted before), 0 failed" "$T/a1.log" || fail "summary: $(tail -1 "$T/a1.log")"
for r in app/one:v1 app/one:v2 app/two:latest lib/three:v1; do
    src=$(curl -sSfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/${r%%:*}/manifests/${r#*:}" |
        tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
    curl -sSf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REG/v2/${r%%:*}/manifests/${r#*:}-nydus" >"$T/n.json" || fail "no target for $r"
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); a=m["annotations"]
assert a["containerd.io/snapshot/nydus-source-digest"] == sys.argv[2], a
assert m["layers"][-1]["annotations"]["containerd.io/snapshot/nydus-bootstrap"] == "true"' "$T/n.json" "$src" ||
        fail "target of $r"
done
"$CF" check --work-dir "$T/work" "$REG/app/two:latest" "$REG/app/two:latest-nydus" 2>"$T/check.log" ||
    fail "check: $(cat "$T/check.log")"

note "second run: everything skipped, nothing pushed"
puts() { grep -cE '"(PUT|PATCH|POST) /v2/' "$RDIR/log" || true; }
p0=$(puts)
all "$T/a2.log" --repo-filter "$FILTER" >"$T/t2" || fail "second run: $(cat "$T/a2.log")"
rows <"$T/t2" >"$T/r2"
[ "$(grep -c ' skipped$' "$T/r2")" = 4 ] && [ "$(wc -l <"$T/r2")" = 4 ] || fail "second run: $(cat "$T/t2")"
[ "$(puts)" = "$p0" ] || fail "the second run pushed $(( $(puts) - p0 )) things"

note "a source tag pointing to another image: converted again, the rest skipped"
retag img2=app/one:v1
all "$T/a3.log" --repo-filter "$FILTER" >"$T/t3" || fail "third run: $(cat "$T/a3.log")"
rows <"$T/t3" >"$T/r3"
grep -qx "$REG/app/one:v1 $REG/app/one:v1-nydus converted" "$T/r3" &&
    [ "$(grep -c ' skipped$' "$T/r3")" = 3 ] || fail "third run: $(cat "$T/t3")"

note "--dry-run and --shard: disjoint shards covering the listing (paginated catalog)"
all "$T/d.log" --dry-run >"$T/full" || fail "dry run: $(cat "$T/d.log")"
rows <"$T/full" >"$T/full.rows"
awk '{print $1}' "$T/full.rows" >"$T/full.src"
# 4 filtered + other/skip + 101 pad repositories + the 2 pushed with skopeo; stray-nydus is
# never a source
[ "$(wc -l <"$T/full.src")" = 108 ] || fail "full listing has $(wc -l <"$T/full.src") refs"
grep -q "/pad/r100:v1$" "$T/full.src" && grep -q "/other/skip:v1$" "$T/full.src" ||
    fail "catalog pages missing"
! grep -q -- '-nydus$' "$T/full.src" || fail "a -nydus tag listed as a source"
grep -q "other/skip:v1-nydus to-convert$" "$T/full.rows" && grep -q "lib/three:v1-nydus skipped$" "$T/full.rows" ||
    fail "dry run status: $(cat "$T/full")"

for i in 0 1 2; do
    all "$T/s$i.log" --dry-run --shard "$i/3" >"$T/shard$i" || fail "shard $i: $(cat "$T/s$i.log")"
    rows <"$T/shard$i" | awk '{print $1}' >"$T/shard$i.src"
    [ -s "$T/shard$i.src" ] || fail "shard $i is empty"
done
sort "$T"/shard?.src | uniq -d >"$T/dups"
[ ! -s "$T/dups" ] || fail "shards overlap: $(cat "$T/dups")"
sort "$T"/shard?.src | diff -u "$T/full.src" - || fail "the shards do not cover the listing"
note "shard sizes: $(wc -l <"$T/shard0.src") $(wc -l <"$T/shard1.src") $(wc -l <"$T/shard2.src")"

note "a registry with token auth: the catalog scope asked for, with credentials only"
. "$CHUNKFLY_SRC/tests/integration/mount/backend_lib.sh"
start_token_registry
skopeo copy -q --dest-tls-verify=false --dest-creds alice:s3cret "oci:$T/oci:img1" \
    "docker://$TREG/tok/app:v1" || fail "push to the token registry"
mkdir -p "$T/dc" "$T/nodc"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$TREG" "$(printf alice:s3cret | base64 -w0)" >"$T/dc/config.json"
echo '{}' >"$T/nodc/config.json"
if "$CF" convert --all "$TREG" --docker-config "$T/nodc/config.json" --work-dir "$T/work" \
    >/dev/null 2>"$T/anon.log"; then
    fail "an anonymous catalog listing passed"
fi
grep -q "registry $TREG: .*(catalog)" "$T/anon.log" && grep -q "must allow listing the catalog" "$T/anon.log" ||
    fail "anonymous refusal unclear: $(cat "$T/anon.log")"
"$CF" convert --all "$TREG" --docker-config "$T/dc/config.json" --work-dir "$T/work" \
    >"$T/tok.t" 2>"$T/tok.log" || fail "--all with token auth: $(cat "$T/tok.log")"
rows <"$T/tok.t" | grep -qx "$TREG/tok/app:v1 $TREG/tok/app:v1-nydus converted" ||
    fail "token registry table: $(cat "$T/tok.t")"
grep -q "scope=registry:catalog:\* status=200" "$T/tok/log" || fail "no catalog token: $(cat "$T/tok/log")"

note "usage errors"
for bad in "--shard 3/3" "--shard x" "--repo-filter (" ; do
    # shellcheck disable=SC2086
    if "$CF" convert --all "$REG" $bad >/dev/null 2>"$T/err"; then fail "accepted: $bad"; fi
done
grep -q "repo-filter" "$T/err" || fail "bad regex unclear: $(cat "$T/err")"
echo PASS
