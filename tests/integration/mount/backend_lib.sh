# shellcheck shell=bash
# Helpers for the mount backend tests (source after testlib.sh).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
READ="$CHUNKFLY_BUILD/tests/backend_read"
[ -x "$READ" ] || fail "$READ not built"

# registry_config FILE HOST REPO [EXTRA_JSON_MEMBERS]: the config nydus-snapshotter writes for
# a registry image (its always-sent keys included), with extra members of backend.config.
registry_config() {
    local file=$1 host=$2 repo=$3 extra=${4:-}
    [ -n "$extra" ] && extra=",$extra"
    cat >"$file" <<JSON
{
  "device": {
    "id": "/1",
    "backend": {"type": "registry", "config": {"readahead": false, "host": "$host",
      "repo": "$repo", "scheme": "http", "proxy": {"fallback": false}$extra}},
    "cache": {"type": "blobcache", "config": {"work_dir": "$T/cache", "disable_indexed_map": false}}
  },
  "mode": "direct", "digest_validate": false, "enable_xattr": true, "amplify_io": 1048576,
  "fs_prefetch": {"enable": false, "prefetch_all": false}
}
JSON
}

# stat_of OUTPUT NAME: a counter from backend_read's stats line
stat_of() { sed -n 's/^stats .*\b'"$2"'=\([-0-9]*\).*/\1/p' <<<"$1"; }
# field OUTPUT KEY: the value after "KEY " on its line
field() { awk -v k="$2" '$1==k{print $2}' <<<"$1"; }
