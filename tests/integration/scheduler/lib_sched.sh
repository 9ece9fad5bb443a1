# Helpers for scheduler integration tests (sourced after tests/lib/testlib.sh).
need_bin chunkfly-scheduler
need_bin chunkfly-sched-sim
SCHED=$CHUNKFLY_BIN/chunkfly-scheduler
SIM=$CHUNKFLY_BIN/chunkfly-sched-sim

# start_sched NAME [extra args...]: sets ${NAME}_PID, ${NAME}_MESH (ip:port), ${NAME}_HTTP
start_sched() {
    local name=$1; shift
    local mp hp
    mp=$(free_port); hp=$(free_port)
    bg_start "$T/$name.log" "$SCHED" --listen "127.0.0.1:$mp" --http "127.0.0.1:$hp" "$@"
    eval "${name}_PID=$CF_LAST_PID ${name}_MESH=127.0.0.1:$mp ${name}_HTTP=127.0.0.1:$hp"
    wait_port 127.0.0.1 "$mp"
    wait_port 127.0.0.1 "$hp"
}

# restart_sched NAME [extra args...]: same ports as before
restart_sched() {
    local name=$1; shift
    local mesh http
    eval "mesh=\$${name}_MESH http=\$${name}_HTTP"
    bg_start "$T/$name.log.2" "$SCHED" --listen "$mesh" --http "$http" "$@"
    eval "${name}_PID=$CF_LAST_PID"
    wait_port 127.0.0.1 "${mesh##*:}"
}

# val FILE KEY: value of key=value line
val() { sed -n "s/^$2=//p" "$1" | head -1; }

# expect FILE KEY OP NUMBER
expect() {
    local v
    v=$(val "$1" "$2")
    [ -n "$v" ] || fail "$1: no $2 (sim output: $(tr '\n' ' ' <"$1"))"
    [ "$v" "$3" "$4" ] || fail "$2=$v, expected $3 $4 (sim output: $(tr '\n' ' ' <"$1"))"
}

metric() { # metric HTTP NAME
    curl -fsS "http://$1/metrics" | awk -v n="$2" '$1 == n {print $2}'
}
