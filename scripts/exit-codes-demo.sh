#!/usr/bin/env bash
# Shows each exit code of `earshot` with the one line it prints, offline.
#
# Every case runs the real command against local stand-ins: a loopback HTTP server serving
# the demo's captured App Store reviews (config/demo/appstore_reviews.json), a port nothing
# listens on for an unreachable Slack or PostgreSQL, SQLite files in a temporary directory.
# Nothing leaves the machine. Exits 1 if any case's code is not the documented one.
#
#   bash scripts/exit-codes-demo.sh            # uses .venv/bin/earshot and .venv/bin/python
#   EARSHOT=earshot PYTHON=python3 bash scripts/exit-codes-demo.sh
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
EARSHOT="${EARSHOT:-$root/.venv/bin/earshot}"
PYTHON="${PYTHON:-$root/.venv/bin/python}"
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {  # a loopback port nothing listens on (bound, then released)
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# The App Store feed: page 1 is the demo's real captured reviews, page 2 an empty feed.
feed="$work/feed/us/rss/customerreviews"
mkdir -p "$feed/page=1/id=284815942/sortby=mostrecent" "$feed/page=2/id=284815942/sortby=mostrecent"
"$PYTHON" - "$feed" <<'EOF'
import sys
from importlib import resources
from pathlib import Path

feed = Path(sys.argv[1])
reviews = resources.files("earshot.config.demo").joinpath("appstore_reviews.json")
(feed / "page=1/id=284815942/sortby=mostrecent/json").write_bytes(reviews.read_bytes())
(feed / "page=2/id=284815942/sortby=mostrecent/json").write_text('{"feed": {"author": {}}}')
EOF
api_port="$(free_port)"
"$PYTHON" -m http.server "$api_port" --bind 127.0.0.1 --directory "$work/feed" \
    >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $api_port), 1)" \
        2>/dev/null && break
    sleep 0.1
done

config() {  # config NAME APP_ID: a config polling the local feed, its own SQLite file
    cat >"$work/$1.toml" <<EOF
[product]
name = "Demo"

[slack]
min_interval = 0

[storage]
path = "$work/$1.db"

[http]
enabled = false

[[sources]]
type = "appstore"
app_id = $2
base_url = "http://127.0.0.1:$api_port"
backfill = "10000d"
EOF
    echo "$work/$1.toml"
}

failures=0
show() {  # show EXPECTED CODE LINE DESCRIPTION
    local mark="ok"
    [ "$2" = "$1" ] || { mark="UNEXPECTED (documented: $1)"; failures=$((failures + 1)); }
    printf 'exit %s  %-44s %s\n        %s\n' "$2" "$4" "$mark" "$3"
}
last_line() { grep -v '^\s*$' "$1" | tail -n 1; }
# The commands run with a clean earshot environment and console delivery unless set.
clean_env=(env -u DATABASE_URL -u SLACK_BOT_TOKEN -u EARSHOT_CONFIG -u EARSHOT_HTTP_PORT -u GITHUB_TOKEN
    EARSHOT_LOG_LEVEL=ERROR EARSHOT_LOG_FORMAT=text)

# 0: every alert delivered (to the console: no SLACK_BOT_TOKEN).
c="$(config ok 284815942)"
"${clean_env[@]}" "$EARSHOT" run --once --config "$c" >"$work/out" 2>"$work/err"
show 0 $? "$(grep '^earshot run --once:' "$work/out")" "run --once, all delivered"

# 1: Slack unreachable: the alerts stay pending after the drain timeout.
c="$(config slack 284815942)"
slack_port="$(free_port)"
"${clean_env[@]}" SLACK_BOT_TOKEN=xoxb-demo EARSHOT_SLACK__DRAIN_TIMEOUT=2s \
    EARSHOT_SLACK__API_URL="http://127.0.0.1:$slack_port/api/" \
    "$EARSHOT" run --once --config "$c" >"$work/out" 2>"$work/err"
show 1 $? "$(grep '^earshot run --once:' "$work/out")" "run --once, Slack unreachable"

# 2: a typo in the config.
c="$(config typo 284815942)"
sed -i 's/^min_interval/min_intervall/' "$c"
"${clean_env[@]}" "$EARSHOT" run --once --config "$c" >"$work/out" 2>"$work/err"
show 2 $? "$(last_line "$work/err")" "run --once, a misspelt key"

# 2: check refuses what run would refuse (GitHub discussions without GITHUB_TOKEN).
c="$(config discussions 284815942)"
sed -i 's/^name = "Demo"$/name = "Demo"\nqueries = ["demo"]/' "$c"
printf '[[sources]]\ntype = "github"\nkinds = ["discussions"]\n' >>"$c"
"${clean_env[@]}" "$EARSHOT" check --config "$c" >"$work/out" 2>"$work/err"
show 2 $? "$(last_line "$work/err")" "check, a source that needs a secret"

# 2: a second run on the same SQLite file (a real `earshot run` holds it).
c="$(config held 284815942)"
"${clean_env[@]}" "$EARSHOT" run --config "$c" >/dev/null 2>&1 &
holder=$!
pids+=("$holder")
for _ in $(seq 300); do
    [ "$(cat "$work/held.db.lock" 2>/dev/null)" = "$holder" ] && break
    sleep 0.1
done
"${clean_env[@]}" "$EARSHOT" run --once --config "$c" >"$work/out" 2>"$work/err"
show 2 $? "$(last_line "$work/err")" "run --once beside a running earshot run"

# 2: the ops port is taken (here by the feed server).
c="$(config port 284815942)"
sed -i 's/^enabled = false/enabled = true/' "$c"
"${clean_env[@]}" EARSHOT_HTTP__HOST=127.0.0.1 EARSHOT_HTTP__PORT="$api_port" \
    "$EARSHOT" run --config "$c" >"$work/out" 2>"$work/err"
show 2 $? "$(last_line "$work/err")" "run, ops port taken"

# 2: eval of an empty file.
: >"$work/empty.csv"
"${clean_env[@]}" "$EARSHOT" eval "$work/empty.csv" >"$work/out" 2>"$work/err"
show 2 $? "$(last_line "$work/err")" "eval, empty file"

# 3: every source failed (the feed has no app 1: 404).
c="$(config gone 1)"
"${clean_env[@]}" "$EARSHOT" run --once --config "$c" >"$work/out" 2>"$work/err"
show 3 $? "$(grep '^earshot run --once:' "$work/out")" "run --once, every source failed"

# 4: PostgreSQL unreachable (nothing listens on the port).
c="$(config pg 284815942)"
db_port="$(free_port)"
for command in "run --once" "check" "report" "db current"; do
    # shellcheck disable=SC2086 # the command's words
    "${clean_env[@]}" DATABASE_URL="postgresql://earshot:s3cret@127.0.0.1:$db_port/earshot" \
        "$EARSHOT" $command --config "$c" >"$work/out" 2>"$work/err"
    show 4 $? "$(last_line "$work/err")" "$command, database unreachable"
done

if [ "$failures" -ne 0 ]; then
    echo "exit-codes-demo: $failures case(s) exited with another code than documented" >&2
    exit 1
fi
echo "exit-codes-demo: every case exited with its documented code"
