#!/usr/bin/env bash
# selftest.sh -- end-to-end self-test of the Partoo mock server (partoo-mock).
#
# Starts the mock on an ephemeral 127.0.0.1 port, exercises every documented
# behaviour with the curl CLI, checks the answers, prints "N passed, N failed"
# as its last line and exits non-zero on any failure.  Every mock it starts
# is killed on exit (trap).  Needs bash, curl, od; openssl is optional (TLS
# test is skipped without it).  Runs as any user: all files go to a mktemp
# directory.  Builds partoo-mock first if it is missing or stale.
# Env: MOCK_WRAPPER="valgrind --leak-check=full ..." runs every mock under a
# wrapper; KEEP_TMP=1 keeps the temp directory (mock stdout/stderr) and
# prints its path.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/partoo-mock
if [ ! -x "$BIN" ] || [ "$HERE/partoo_mock.c" -nt "$BIN" ] || [ "$HERE/mock_util.c" -nt "$BIN" ] ||
   [ "$HERE/mock_util.h" -nt "$BIN" ] || [ "$HERE/mock_webhook.c" -nt "$BIN" ] ||
   [ "$HERE/mock_webhook.h" -nt "$BIN" ]; then
  make -s -C "$HERE" partoo-mock >&2 || { echo "0 passed, 1 failed"; exit 1; }
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/partoo-mock-selftest.XXXXXX") || exit 1
PIDS=()
# PIDS holds only mocks that are still running (stop_mock removes them), so
# the trap never signals a recycled pid.
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
# stop_mock PID SIGNAL -> STOP_STATUS (exit status of the mock)
stop_mock() {
  local p keep=()
  kill "-$2" "$1"
  wait "$1"
  STOP_STATUS=$?
  for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
ko() { FAIL=$((FAIL + 1)); echo "FAIL - $1${2:+ -- $2}"; }
check() { # name condition-result(0/1) [detail]
  if [ "$2" = 0 ]; then ok "$1"; else ko "$1" "${3:-}"; fi
}

# start_mock NAME ARGS... -> sets PORT, PID, BASE
start_mock() {
  local name=$1
  shift
  rm -f "$TMP/$name.port"
  # MOCK_WRAPPER (optional) prefixes the command, e.g. MOCK_WRAPPER="valgrind -q"
  ${MOCK_WRAPPER:-} "$BIN" --port-file "$TMP/$name.port" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PID=$!
  PIDS+=("$PID")
  local i
  for i in $(seq 200); do
    [ -s "$TMP/$name.port" ] && break
    sleep 0.05
  done
  PORT=$(cat "$TMP/$name.port" 2>/dev/null)
  BASE=http://127.0.0.1:$PORT
}

# req METHOD PATH [curl args...] -> CODE BODY RC MS; headers in $TMP/hdrs
req() {
  local m=$1 p=$2
  shift 2
  CODE=$(curl -s -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code} %{time_total}' -X "$m" "$@" "$BASE$p")
  RC=$?
  # the request's own time as curl measured it, in ms (not the process's)
  MS=$(awk -v t="${CODE#* }" 'BEGIN { printf "%d", t * 1000 }')
  CODE=${CODE% *}
  BODY=$(cat "$TMP/body" 2>/dev/null)
}
expect() { # name code [exact-body]
  if [ "$CODE" = "$2" ] && { [ $# -lt 3 ] || [ "$BODY" = "$3" ]; }; then
    ok "$1"
  else
    ko "$1" "got $CODE rc=$RC body=$(printf %s "$BODY" | head -c 300)"
  fi
}
KEY=test-key
send_json() { req POST /v2/messages -H "x-APIKey: $KEY" -H 'Content-Type: application/json' --data-binary "$1" "${@:2}"; }
text_body() { printf '{"conversation_id":%s,"content_type":"Text","date":"2026-11-23T10:00:00.123456Z","content":"%s"}' "$1" "$2"; }
send_text() { send_json "$(text_body "$1" "$2")"; }
stats() { curl -s "$BASE/_mock/stats"; }
stat() { stats | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }
header() { tr -d '\r' <"$TMP/hdrs" | grep -i "^$1:" | head -1 | sed 's/^[^:]*: *//'; }
msgid() { printf %s "$BODY" | sed -n 's/^{"status":"success","message_id":\([0-9]*\)}$/\1/p'; }
reset() { curl -s -X POST "$BASE/_mock/reset" >/dev/null; }
fnv64() {
  local h=$((0xcbf29ce484222325)) b
  for b in $(od -An -v -tu1 "$1"); do h=$(((h ^ b) * 0x100000001b3)); done
  printf '%016x' "$h"
}
now_us() { echo $(($(date +%s%N) / 1000)); }

E400() { printf '{"errors":{"json":{"%s":["%s"]}}}' "$1" "$2"; }
UNAUTH='{"errors":{"authentication":"User not authenticated"}}'
NOTFOUND='{"error":{"message":"Not found"}}'

# ---------------------------------------------------------------- startup
start_mock main --api-key test-key --api-key other-key --api-key-prefix key- \
  --forbidden-conversation 777 --threads 2 --quiet
MAIN_PID=$PID
check "port file written" "$([ -n "$PORT" ] && [ "$PORT" -gt 0 ] && echo 0 || echo 1)"
sleep 0.1
check "stdout announces port" "$(grep -qx "listening on 127.0.0.1:$PORT" "$TMP/main.out" && echo 0 || echo 1)" \
  "$(cat "$TMP/main.out")"
req GET /_mock/health
expect "health" 200 '{"status":"ok"}'

# ---------------------------------------------------------------- auth
req POST /v2/messages -H 'Content-Type: application/json' --data-binary "$(text_body 1 a)"
expect "401 without key" 401 "$UNAUTH"
KEY=wrong send_text 1 a
expect "401 wrong key" 401 "$UNAUTH"
req POST /v2/messages -H 'X-APIKEY: test-key' -H 'Content-Type: application/json' \
  --data-binary "$(text_body 1 upper-case-header)"
expect "header name case-insensitive" 200
KEY=other-key send_text 1 other
expect "second --api-key accepted" 200
KEY=key-173 send_text 1 prefixed
expect "--api-key-prefix key accepted" 200
req POST /v2/messages/1000001/retry
expect "401 on retry without key" 401 "$UNAUTH"
req GET /v2/whatever
expect "401 before 404 under /v2" 401 "$UNAUTH"

# ---------------------------------------------------------------- send: JSON
reset
send_text 12 hello
FIRST=$(msgid)
check "Text accepted with message_id" "$([ "$CODE" = 200 ] && [ -n "$FIRST" ] && echo 0 || echo 1)" "$CODE $BODY"
send_text 12 hello2
check "message_id increments by 1" "$([ "$(msgid)" = "$((FIRST + 1))" ] && echo 0 || echo 1)" "$BODY"
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: application/json; charset=utf-8' \
  --data-binary "$(text_body 12 charset)"
expect "Content-Type with charset parameter" 200
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"no fraction"}'
expect "date without fraction" 200
send_json '{"date":"2026-11-23T10:00:00+00:00","content":"offset","content_type":"Text","conversation_id":5}'
expect "date with +00:00, any key order" 200
for d in '2026-11-23 10:00:00Z' '2026-11-23T10:00:00' '2026-11-23T10:00:00+01:00' '2026-13-23T10:00:00Z' \
         '2026-11-23T10:00:00.Z' '23/11/2026' ''; do
  send_json "{\"conversation_id\":5,\"content_type\":\"Text\",\"date\":\"$d\",\"content\":\"x\"}"
  expect "bad date '$d'" 400 "$(E400 date 'Not a valid datetime.')"
done
send_json '{"conversation_id":5,"content_type":"Text","date":20261123,"content":"x"}'
expect "date not a string" 400 "$(E400 date 'Not a valid string.')"
send_json '{"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"x"}'
expect "missing conversation_id" 400 "$(E400 conversation_id 'Missing data for required field.')"
send_json '{"conversation_id":5,"date":"2026-11-23T10:00:00Z","content":"x"}'
expect "missing content_type" 400 "$(E400 content_type 'Missing data for required field.')"
send_json '{"conversation_id":5,"content_type":"Text","content":"x"}'
expect "missing date" 400 "$(E400 date 'Missing data for required field.')"
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z"}'
expect "missing content" 400 "$(E400 content 'Missing data for required field.')"
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"x","extra":1}'
expect "extra key rejected" 400 "$(E400 extra 'Unknown field.')"
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"x","url":"http://a/b"}'
expect "url not allowed with Text" 400 "$(E400 url 'Unknown field.')"
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"x","content":"y"}'
expect "duplicate key rejected" 400 "$(E400 content 'Duplicate field.')"
for v in '"5"' '5.0' '5e0' 'true' 'null' '99999999999999999999'; do
  send_json "{\"conversation_id\":$v,\"content_type\":\"Text\",\"date\":\"2026-11-23T10:00:00Z\",\"content\":\"x\"}"
  expect "conversation_id $v rejected" 400 "$(E400 conversation_id 'Not a valid integer.')"
done
for v in 0 -3; do
  send_json "{\"conversation_id\":$v,\"content_type\":\"Text\",\"date\":\"2026-11-23T10:00:00Z\",\"content\":\"x\"}"
  expect "conversation_id $v rejected" 400 "$(E400 conversation_id 'Must be greater than or equal to 1.')"
done
send_json '{"conversation_id":5,"content_type":"Sticker","date":"2026-11-23T10:00:00Z","content":"x"}'
expect "unknown content_type" 400 "$(E400 content_type 'Must be one of: Text, Image, Video, Audio, Document.')"
send_json '{"conversation_id":5,"content_type":"text","date":"2026-11-23T10:00:00Z","content":"x"}'
expect "content_type is case-sensitive" 400
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":""}'
expect "empty Text content" 400 "$(E400 content 'Shorter than minimum length 1.')"
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":7}'
expect "non-string Text content" 400 "$(E400 content 'Not a valid string.')"
send_json '{"conversation_id":5,"content_type":"Image","date":"2026-11-23T10:00:00Z","url":"https://cdn.example.com/a.png"}'
expect "Image by url" 200
send_json '{"conversation_id":5,"content_type":"Image","date":"2026-11-23T10:00:00Z","url":"ftp://x/a.png"}'
expect "Image bad url" 400 "$(E400 url 'Not a valid URL.')"
send_json '{"conversation_id":5,"content_type":"Image","date":"2026-11-23T10:00:00Z","content":{"url":"https://x/a.png"}}'
expect "Image with nested content rejected" 400 "$(E400 url 'Missing data for required field.')"
for t in Video Audio Document; do
  send_json "{\"conversation_id\":5,\"content_type\":\"$t\",\"date\":\"2026-11-23T10:00:00Z\",\"content\":{\"url\":\"http://x/$t\"}}"
  expect "$t with content.url" 200
done
send_json '{"conversation_id":5,"content_type":"Video","date":"2026-11-23T10:00:00Z","url":"http://x/v.mp4"}'
expect "Video with top-level url rejected" 400 "$(E400 content 'Missing data for required field.')"
send_json '{"conversation_id":5,"content_type":"Audio","date":"2026-11-23T10:00:00Z","content":"http://x/a.aac"}'
expect "Audio with string content rejected" 400
send_json '{"conversation_id":5,"content_type":"Document","date":"2026-11-23T10:00:00Z","content":{"url":"http://x/d","name":"d"}}'
expect "Document content with extra key rejected" 400
send_json '{"conversation_id":5,"content_type":"Document","date":"2026-11-23T10:00:00Z","content":{"url":"x/d"}}'
expect "Document content.url not http" 400
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"x"'
expect "truncated JSON" 400 "$(E400 _schema 'Invalid JSON body.')"
send_json '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"x"} x'
expect "trailing garbage after JSON" 400 "$(E400 _schema 'Invalid JSON body.')"
send_json '[1,2,3]'
expect "JSON array body" 400 "$(E400 _schema 'Invalid input type.')"
send_json ''
expect "empty body" 400 "$(E400 _schema 'Invalid JSON body.')"
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: text/plain' --data-binary "$(text_body 5 x)"
expect "text/plain body rejected" 400
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: application/json' \
  --data-binary @<(printf '{"conversation_id":5,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"x"}\0junk')
expect "embedded NUL after JSON rejected" 400

# ---------------------------------------------------------------- send: multipart
IMG=$TMP/img.bin
{
  head -c 3000 /dev/urandom
  printf '\0\0\r\n\r\n--\r\n--------------------------x\r\nContent-Disposition: form-data; name="x"\r\n\r\n\0'
  head -c 1000 /dev/urandom
  printf '\r\n'
} >"$IMG"
IMG_LEN=$(wc -c <"$IMG")
IMG_FNV=$(fnv64 "$IMG")
send_mp() { req POST /v2/messages -H "x-APIKey: $KEY" "$@"; }
send_mp -F conversation_id=77 -F content_type=Image -F date=2026-11-23T10:00:00Z -F "image=@$IMG;filename=photo.png;type=image/png"
MP_ID=$(msgid)
expect "multipart image upload" 200
LINE=$(curl -s "$BASE/_mock/accepted" | grep -P "^send\t$MP_ID\t")
check "upload recorded with exact length and FNV-1a 64" \
  "$([ "$(printf %s "$LINE" | cut -f3,4,5,7,8,9)" = "$(printf '77\tImage\ttest-key\tphoto.png\t%s\t%s' "$IMG_LEN" "$IMG_FNV")" ] && echo 0 || echo 1)" \
  "line=[$LINE] want len=$IMG_LEN fnv=$IMG_FNV"
send_mp -F conversation_id=77 -F content_type=Text -F date=2026-11-23T10:00:00Z -F "image=@$IMG"
expect "multipart content_type must be Image" 400 "$(E400 content_type 'Must be one of: Image.')"
send_mp -F conversation_id=77 -F content_type=Image -F date=2026-11-23T10:00:00Z -F "image=<$IMG"
expect "multipart image without filename" 400 "$(E400 image 'Missing filename.')"
: >"$TMP/empty.png"
send_mp -F conversation_id=77 -F content_type=Image -F date=2026-11-23T10:00:00Z -F "image=@$TMP/empty.png"
expect "multipart empty image" 400 "$(E400 image 'Empty file.')"
send_mp -F conversation_id=77 -F content_type=Image -F date=2026-11-23T10:00:00Z
expect "multipart missing image" 400 "$(E400 image 'Missing data for required field.')"
send_mp -F conversation_id=abc -F content_type=Image -F date=2026-11-23T10:00:00Z -F "image=@$IMG"
expect "multipart bad conversation_id" 400 "$(E400 conversation_id 'Not a valid integer.')"
send_mp -F conversation_id=77 -F content_type=Image -F date=yesterday -F "image=@$IMG"
expect "multipart bad date" 400 "$(E400 date 'Not a valid datetime.')"
send_mp -F conversation_id=77 -F content_type=Image -F date=2026-11-23T10:00:00Z -F "image=@$IMG" -F foo=bar
expect "multipart extra part" 400 "$(E400 foo 'Unknown field.')"
head -c $((5 * 1024 * 1024)) /dev/zero | tr '\0' 'A' >"$TMP/5mb.png"
send_mp -F conversation_id=77 -F content_type=Image -F date=2026-11-23T10:00:00Z -F "image=@$TMP/5mb.png"
expect "multipart image of exactly 5 MB" 200
printf B >>"$TMP/5mb.png"
send_mp -F conversation_id=77 -F content_type=Image -F date=2026-11-23T10:00:00Z -F "image=@$TMP/5mb.png"
expect "multipart image of 5 MB + 1 byte" 400 "$(E400 image 'File too large (max 5 MB).')"
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: multipart/form-data; boundary=zzz' \
  --data-binary @"$IMG"
expect "garbage multipart body" 400 "$(E400 _schema 'Invalid multipart/form-data body.')"
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: multipart/form-data' --data-binary 'x'
expect "multipart without boundary" 400 "$(E400 _schema 'Invalid multipart/form-data body.')"
printf -- '--b\r\nContent-Disposition: form-data; name="conversation_id"\r\n\r\n5\r\n--b\r\nContent-Disposition: form-data; name="content_type"\r\n\r\nImage' >"$TMP/trunc.mp"
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: multipart/form-data; boundary=b' --data-binary @"$TMP/trunc.mp"
expect "truncated multipart body" 400 "$(E400 _schema 'Invalid multipart/form-data body.')"

# ---------------------------------------------------------------- body cap
head -c $((6 * 1024 * 1024 + 1)) /dev/zero >"$TMP/big.bin"
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: application/json' --data-binary @"$TMP/big.bin"
expect "body over 6 MB -> 413" 413
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
  --data-binary @"$TMP/big.bin"
expect "chunked body over 6 MB -> 413" 413
send_text 5 still-alive
expect "alive after oversized bodies" 200

# ---------------------------------------------------------------- retry & routing
req POST "/v2/messages/$FIRST/retry" -H "x-APIKey: test-key" -H 'Content-Type: application/json' -d '{"ignored":true}'
expect "retry of issued id" 200 '{"status":"success"}'
req POST /v2/messages/999/retry -H "x-APIKey: test-key"
expect "retry of unknown id" 400 "$(E400 message_id 'Unknown message')"
req POST /v2/messages/99999999/retry -H "x-APIKey: test-key"
expect "retry of not-yet-issued id" 400 "$(E400 message_id 'Unknown message')"
req POST /v2/messages/abc/retry -H "x-APIKey: test-key"
expect "retry of non-integer id" 400 "$(E400 message_id 'Not a valid integer.')"
req GET "/v2/messages/$FIRST/retry" -H "x-APIKey: test-key"
expect "GET retry -> 404" 404 "$NOTFOUND"
req GET /v2/messages -H "x-APIKey: test-key"
expect "GET /v2/messages without conversation_id -> 400" 400 '{"errors":{"query":{"conversation_id":["Missing data for required field."]}}}'
req POST /v2/conversations -H "x-APIKey: test-key"
expect "unknown /v2 path -> 404" 404 "$NOTFOUND"
req POST "/v2/messages/$FIRST/retry/x" -H "x-APIKey: test-key"
expect "retry with extra segment -> 404" 404 "$NOTFOUND"
req GET /elsewhere
expect "path outside /v2 -> 404" 404 "$NOTFOUND"

# ---------------------------------------------------------------- magic ids
reset
send_text 400 m
expect "magic 400" 400 '{"errors":{"json":{"conversation_id":["Invalid conversation"]}}}'
send_text 403 m
expect "magic 403" 403 '{"errors":{"authorization":"Operation not allowed"}}'
send_text 777 m
expect "--forbidden-conversation" 403 '{"errors":{"authorization":"Operation not allowed"}}'
send_text 404 m
expect "magic 404" 404 '{"error":{"code":404,"message":"Conversation not found"}}'
send_text 415 m
expect "magic 415" 415 '{"errors":{"json":{"content_type":["Unsupported media type"]}}}'
send_text 429 m
expect "magic 429" 429 '{"errors":{"rate_limit":"Too many requests"}}'
check "magic 429 Retry-After: 7" "$([ "$(header Retry-After)" = 7 ] && echo 0 || echo 1)" "$(header Retry-After)"
send_text 500 m
expect "magic 500" 500 '{"error":{"message":"Internal error"}}'
send_text 502 m
expect "magic 502" 502 '{"error":{"message":"Internal error"}}'
send_text 503 m
expect "magic 503 plain text" 503 'Service Unavailable'
check "magic 503 is text/plain" "$(header Content-Type | grep -q '^text/plain' && echo 0 || echo 1)"
send_text 408000 m
check "magic 408000 drops the connection" "$([ "$RC" = 52 ] && [ "$CODE" = 000 ] && echo 0 || echo 1)" "rc=$RC code=$CODE"
send_text 6000001 m
expect "magic 6000001 not json" 200 'not json'
send_text 6000002 m
expect "magic 6000002 without message_id" 200 '{"status":"success"}'
send_text 6000003 big
check "magic 6000003 2 MB JSON body" \
  "$([ "$CODE" = 200 ] && [ "$(wc -c <"$TMP/body")" = 2097152 ] &&
    head -c 60 "$TMP/body" | grep -q '^{"status":"success","message_id":[0-9]*,"padding":"xxxx' &&
    [ "$(tail -c 3 "$TMP/body")" = 'x"}' ] && echo 0 || echo 1)"
send_text 5 after-magic
expect "normal send after magic" 200
check "only 6000003 and normal sends accepted" "$([ "$(stat accepted)" = 2 ] && echo 0 || echo 1)" "$(stats)"
check "dropped counted" "$([ "$(stat dropped)" = 1 ] && echo 0 || echo 1)" "$(stats)"

# ---------------------------------------------------------------- delays
reset
T0=$(date +%s%N)
curl -s -o "$TMP/delay.body" -w '%{http_code}' -H 'x-APIKey: test-key' -H 'Content-Type: application/json' \
  --data-binary "$(text_body 5001500 delayed)" "$BASE/v2/messages" >"$TMP/delay.code" &
DPID=$!
sleep 0.2
T1=$(date +%s%N)
send_text 5 not-blocked
T2=$(date +%s%N)
check "delayed request does not block others" \
  "$([ "$CODE" = 200 ] && [ $(((T2 - T1) / 1000000)) -lt 500 ] && echo 0 || echo 1)" "$(((T2 - T1) / 1000000)) ms"
wait "$DPID"
T3=$(date +%s%N)
ELAPSED=$(((T3 - T0) / 1000000))
check "magic 5001500 answers 200 after ~1.5 s" \
  "$([ "$(cat "$TMP/delay.code")" = 200 ] && grep -q message_id "$TMP/delay.body" && [ $ELAPSED -ge 1450 ] &&
    [ $ELAPSED -lt 3000 ] && echo 0 || echo 1)" "$(cat "$TMP/delay.code") $ELAPSED ms"
for i in $(seq 60); do
  [ "$i" -gt 1 ] && echo next
  printf 'url = "%s/v2/messages"\noutput = "/dev/null"\nsilent\nheader = "x-APIKey: test-key"\n' "$BASE"
  printf 'header = "Content-Type: application/json"\ndata = "%s"\n' "$(text_body 5001000 "par-$i" | sed 's/"/\\"/g')"
done >"$TMP/par.cfg"
T0=$(date +%s%N)
curl -s --parallel --parallel-immediate --parallel-max 100 -K "$TMP/par.cfg" 2>/dev/null
ELAPSED=$((($(date +%s%N) - T0) / 1000000))
check "60 parallel 1 s delays finish together" "$([ $ELAPSED -lt 2500 ] && [ "$(stat accepted)" = 62 ] && echo 0 || echo 1)" \
  "$ELAPSED ms, accepted=$(stat accepted)"

# ---------------------------------------------------------------- stats
reset
send_text 11 dup
send_text 11 dup
send_text 11 unique
send_text 400 m
KEY=nope send_text 11 x
req POST "/v2/messages/$FIRST/retry" -H "x-APIKey: test-key"
S=$(stats)
check "stats requests" "$([ "$(stat requests)" = 6 ] && echo 0 || echo 1)" "$S"
check "stats accepted" "$([ "$(stat accepted)" = 3 ] && echo 0 || echo 1)" "$S"
check "stats retries_ok" "$([ "$(stat retries_ok)" = 1 ] && echo 0 || echo 1)" "$S"
check "stats accepted_distinct_content (duplicate detection)" \
  "$([ "$(stat accepted_distinct_content)" = 2 ] && echo 0 || echo 1)" "$S"
check "stats status map" "$(printf %s "$S" | grep -q '"status":{"200":4,"400":1,"401":1}' && echo 0 || echo 1)" "$S"
check "stats connections counts TCP connections" "$([ "$(stat connections)" -ge 6 ] && echo 0 || echo 1)" "$S"
reset
curl -s -o /dev/null -o /dev/null -H 'x-APIKey: test-key' -H 'Content-Type: application/json' \
  --data-binary "$(text_body 3 ka)" "$BASE/v2/messages" "$BASE/v2/messages"
S=$(stats) # this query is the 2nd connection since the reset
check "keep-alive: 2 requests on 1 connection" \
  "$(printf %s "$S" | grep -q '^{"requests":2,"accepted":2,"retries_ok":0,"connections":2,' && echo 0 || echo 1)" "$S"

# ---------------------------------------------------------------- accepted log
reset
B0=$(now_us)
send_json '{"conversation_id":21,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"a\tb\nc\\d\re"}'
ID1=$(msgid)
KEY=key-9 send_json '{"conversation_id":22,"content_type":"Audio","date":"2026-11-23T10:00:00Z","content":{"url":"http://x/a.aac"}}'
ID2=$(msgid)
req POST "/v2/messages/$ID1/retry" -H "x-APIKey: other-key"
B1=$(now_us)
curl -s "$BASE/_mock/accepted" >"$TMP/acc.tsv"
printf 'send\t%s\t21\tText\ttest-key\tT\ta\\tb\\nc\\\\d\\re\t\t\nsend\t%s\t22\tAudio\tkey-9\tT\thttp://x/a.aac\t\t\nretry\t%s\t21\tText\tother-key\tT\t\t\t\n' \
  "$ID1" "$ID2" "$ID1" >"$TMP/acc.want"
check "accepted TSV content, order and COPY escaping" \
  "$(awk -F'\t' 'BEGIN{OFS="\t"}{$6="T";print}' "$TMP/acc.tsv" | cmp -s - "$TMP/acc.want" && echo 0 || echo 1)" \
  "$(cat -A "$TMP/acc.tsv")"
BAD_T=$(awk -F'\t' -v a="$B0" -v b="$B1" '$6 < a || $6 > b' "$TMP/acc.tsv" | wc -l)
check "accepted time_us is CLOCK_REALTIME at receipt" "$([ "$BAD_T" = 0 ] && echo 0 || echo 1)"
req GET /_mock/accepted
check "accepted content type" "$(header Content-Type | grep -q '^text/tab-separated-values' && echo 0 || echo 1)"

# ---------------------------------------------------------------- request log
reset
send_json '{"conversation_id":31,"content_type":"Text","date":"2026-11-23T10:00:00Z","content":"h\u00e9 \"q\""}'
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: application/json' --data-binary @<(printf 'x\377y\0z')
curl -s "$BASE/_mock/requests" >"$TMP/req.json"
check "requests log keeps exact body" \
  "$(grep -qF '"seq":' "$TMP/req.json" && grep -qF '"method":"POST","path":"/v2/messages","key":"test-key","content_type":"application/json","status":200,"body_len":100,"body":"{\"conversation_id\":31,\"content_type\":\"Text\",\"date\":\"2026-11-23T10:00:00Z\",\"content\":\"h\\u00e9 \\\"q\\\"\"}"' "$TMP/req.json" && echo 0 || echo 1)" \
  "$(head -c 600 "$TMP/req.json")"
check "requests log escapes binary bytes" \
  "$(grep -qF '"status":400,"body_len":5,"body":"x\\xffy\u0000z"' "$TMP/req.json" && echo 0 || echo 1)" "$(cat "$TMP/req.json")"
for i in $(seq 1010); do
  [ "$i" -gt 1 ] && echo next
  printf 'url = "%s/v2/nope"\noutput = "/dev/null"\nsilent\nheader = "x-APIKey: test-key"\n' "$BASE"
done >"$TMP/many.cfg"
curl -K "$TMP/many.cfg"
N=$(curl -s "$BASE/_mock/requests" | grep -c '"seq":')
check "requests log keeps the last 1000" "$([ "$N" = 1000 ] && echo 0 || echo 1)" "$N"
head -c 10000 /dev/zero | tr '\0' 'q' >"$TMP/10k"
req POST /v2/messages -H "x-APIKey: test-key" -H 'Content-Type: application/json' --data-binary @"$TMP/10k"
LAST=$(curl -s "$BASE/_mock/requests" | tail -2 | head -1)
check "requests log truncates bodies to 4 KB" \
  "$(printf %s "$LAST" | grep -q "\"body_len\":10000,\"body\":\"$(printf 'q%.0s' $(seq 4096))\"}" && echo 0 || echo 1)"

# ---------------------------------------------------------------- reset
send_text 41 before-reset
BEFORE=$(msgid)
req POST /_mock/reset
expect "reset" 200
S=$(stats)
check "reset clears counters" \
  "$([ "$(stat requests)" = 0 ] && [ "$(stat accepted)" = 0 ] && [ "$(stat accepted_distinct_content)" = 0 ] &&
    printf %s "$S" | grep -q '"status":{}' && echo 0 || echo 1)" "$S"
check "reset clears records" "$([ -z "$(curl -s "$BASE/_mock/accepted")" ] && echo 0 || echo 1)"
check "reset clears request log" "$([ "$(curl -s "$BASE/_mock/requests" | tr -d '\n')" = '[]' ] && echo 0 || echo 1)"
send_text 41 after-reset
check "message_id keeps increasing across reset" "$([ "$(msgid)" = "$((BEFORE + 1))" ] && echo 0 || echo 1)" "$BODY"
req POST "/v2/messages/$BEFORE/retry" -H "x-APIKey: test-key"
expect "ids issued before reset stay retryable" 200

# ---------------------------------------------------------------- scripted faults
reset
req POST /_mock/faults -H 'Content-Type: application/json' -d \
  '{"retry_after":3,"next":[{"action":"500"},{"action":"503"},{"action":"429","count":2},{"action":"drop"},{"action":"delay","delay_ms":400},{"action":"drop_after_accept"}]}'
expect "set scripted faults" 200
send_text 51 f1
expect "next: 500" 500 '{"error":{"message":"Internal error"}}'
req POST "/v2/messages/$BEFORE/retry" -H "x-APIKey: test-key"
expect "next: 503 (applies to retry too)" 503 'Service Unavailable'
send_text 51 f3
expect "next: 429 #1" 429 '{"errors":{"rate_limit":"Too many requests"}}'
check "next: 429 Retry-After = retry_after" "$([ "$(header Retry-After)" = 3 ] && echo 0 || echo 1)"
send_text 51 f4
expect "next: 429 #2 (count)" 429
send_text 51 f5
check "next: drop" "$([ "$RC" = 52 ] && echo 0 || echo 1)" "rc=$RC"
T0=$(date +%s%N)
send_text 51 f6-delayed
ELAPSED=$((($(date +%s%N) - T0) / 1000000))
check "next: delay then normal processing" "$([ "$CODE" = 200 ] && [ $ELAPSED -ge 380 ] && echo 0 || echo 1)" "$CODE $ELAPSED ms"
send_text 51 f7-daa
check "next: drop_after_accept drops" "$([ "$RC" = 52 ] && echo 0 || echo 1)" "rc=$RC"
send_text 51 f8
expect "script exhausted -> normal" 200
check "faulted requests not accepted, delay and drop_after_accept are" \
  "$([ "$(stat accepted)" = 3 ] && [ "$(stat dropped)" = 2 ] && echo 0 || echo 1)" "$(stats)"
check "drop_after_accept message recorded" "$(curl -s "$BASE/_mock/accepted" | grep -q 'f7-daa' && echo 0 || echo 1)"

# ---------------------------------------------------------------- random faults
reset
req POST /_mock/faults -d '{"rate_5xx":1}'
CODES=""
for i in 1 2 3 4 5 6 7 8 9 10; do send_text 52 r; CODES="$CODES $CODE"; done
check "rate_5xx 1.0 -> every request 500/503" "$(printf %s "$CODES" | tr ' ' '\n' | grep -qv '^50[03]$\|^$' && echo 1 || echo 0)" "$CODES"
check "rate_5xx: nothing accepted" "$([ "$(stat accepted)" = 0 ] && echo 0 || echo 1)"
reset
req POST /_mock/faults -d '{"rate_5xx":0.5,"seed":7}'
for i in $(seq 200); do
  [ "$i" -gt 1 ] && echo next
  printf 'url = "%s/v2/messages"\noutput = "/dev/null"\nsilent\nheader = "x-APIKey: test-key"\n' "$BASE"
  printf 'header = "Content-Type: application/json"\ndata = "%s"\n' "$(text_body 53 "r$i" | sed 's/"/\\"/g')"
done >"$TMP/rand.cfg"
curl -K "$TMP/rand.cfg"
A=$(stat accepted)
check "rate_5xx 0.5 over 200 requests" "$([ "$A" -ge 60 ] && [ "$A" -le 140 ] && echo 0 || echo 1)" "accepted=$A $(stats)"
reset
req POST /_mock/faults -d '{"rate_429":1,"retry_after":2}'
send_text 54 r
check "rate_429 with retry_after" "$([ "$CODE" = 429 ] && [ "$(header Retry-After)" = 2 ] && echo 0 || echo 1)"
req POST /_mock/faults -d '{"rate_drop":1}'
send_text 54 r
check "rate_drop" "$([ "$RC" = 52 ] && echo 0 || echo 1)"
req POST /_mock/faults -d '{"rate_delay":1,"delay_ms":300}'
T0=$(date +%s%N)
send_text 54 delayed
ELAPSED=$((($(date +%s%N) - T0) / 1000000))
check "rate_delay + delay_ms" "$([ "$CODE" = 200 ] && [ $ELAPSED -ge 280 ] && echo 0 || echo 1)" "$CODE $ELAPSED"
req POST /_mock/faults -d '{"rate_drop_after_accept":1}'
send_text 54 daa
check "rate_drop_after_accept: dropped but accepted" \
  "$([ "$RC" = 52 ] && [ "$(stat accepted)" = 2 ] && curl -s "$BASE/_mock/accepted" | grep -q daa && echo 0 || echo 1)"
req POST /_mock/faults -d '{}'
send_text 54 clean
expect "empty fault config clears faults" 200
req POST /_mock/faults -d '{"rate_5xx":2}'
expect "invalid fault rate rejected" 400
req POST /_mock/faults -d '{"rate_5x":0.1}'
expect "unknown fault key rejected" 400
req POST /_mock/faults -d '{"next":[{"action":"boom"}]}'
expect "unknown fault action rejected" 400
req POST /_mock/faults -d 'nope'
expect "fault config not JSON" 400
send_text 54 unaffected
expect "rejected fault config leaves faults off" 200
req POST /_mock/faults -d '{"next":[{"action":"500","count":5}]}'
reset
send_text 54 after-reset
expect "reset clears faults" 200

# ---------------------------------------------------------------- rate limiter
reset
req POST /_mock/ratelimit -d '{"per_minute":3}'
expect "set rate limit" 200
CODES=""
for i in 1 2 3 4; do send_text 61 "rl$i"; CODES="$CODES $CODE"; done
RA=$(header Retry-After)
check "per-key limit: 3 ok then 429" "$([ "$CODES" = " 200 200 200 429" ] && echo 0 || echo 1)" "$CODES"
check "limiter Retry-After within window" "$([ -n "$RA" ] && [ "$RA" -ge 59 ] && [ "$RA" -le 60 ] && echo 0 || echo 1)" "$RA"
req POST "/v2/messages/$BEFORE/retry" -H "x-APIKey: test-key"
expect "limit applies to retry" 429
req GET /v2/nope -H "x-APIKey: test-key"
expect "limit applies to any /v2 path" 429
KEY=other-key send_text 61 other
expect "other key has its own window" 200
check "rate_limited counted" \
  "$([ "$(stat rate_limited)" = 3 ] && stats | grep -q '"rate_limited_by_key":{"test-key":3}' && echo 0 || echo 1)" "$(stats)"
req POST /_mock/ratelimit -d '{"per_minute":0}'
send_text 61 unlimited
expect "per_minute 0 disables" 200
req POST /_mock/ratelimit -d '{"per_minute":2,"window_ms":2000}'
send_text 62 w1 # t=0
sleep 1
send_text 62 w2 # t=1
send_text 62 w3 # t=1 -> 429, oldest leaves at t=2
expect "sliding window: 3rd in window refused" 429
RA=$(header Retry-After)
check "sliding window: Retry-After = ceil(time to oldest leaving)" "$([ "$RA" = 1 ] && echo 0 || echo 1)" "$RA"
sleep 1.1
send_text 62 w4 # t=2.1: first left, 429 did not count
expect "sliding window: slot freed when oldest leaves" 200
send_text 62 w5 # t=2.1: w2 (t=1) and w4 in window
expect "sliding window: not a fixed window" 429
req POST /_mock/ratelimit -d '{"per_minute":-1}'
expect "invalid ratelimit rejected" 400
reset
send_text 62 after-reset
expect "reset disables rate limit" 200
check "reset clears rate_limited" "$([ "$(stat rate_limited)" = 0 ] && echo 0 || echo 1)"

# ---------------------------------------------------------------- latency
reset
req GET /_mock/latency
expect "latency off by default" 200 '{"ms":0,"jitter_ms":0}'
req POST /_mock/latency -d '{"ms":300}'
expect "latency set" 200 '{"ms":300,"jitter_ms":0}'
T0=$(now_us)
send_text 81 lat-300
check "a /v2 answer waits the latency" "$([ "$CODE" = 200 ] && [ "$MS" -ge 300 ] && echo 0 || echo 1)" \
  "$CODE $MS ms"
TU=$(curl -s "$BASE/_mock/accepted" | awk -F'\t' '$7 == "lat-300" { print $6 }')
check "accepted at arrival, before the latency" \
  "$([ -n "$TU" ] && [ $((TU - T0)) -lt 150000 ] && echo 0 || echo 1)" "time_us - sent = $((TU - T0)) us"
req GET /_mock/stats
check "/_mock endpoints answer at once" "$([ "$MS" -lt 250 ] && echo 0 || echo 1)" "$MS ms"
KEY=wrong send_text 81 lat-401
check "a 401 waits the latency too" "$([ "$CODE" = 401 ] && [ "$MS" -ge 300 ] && echo 0 || echo 1)" \
  "$CODE $MS ms"
send_text 408000 lat-drop
check "a dropped connection closes after the latency" \
  "$([ "$RC" = 52 ] && [ "$MS" -ge 300 ] && echo 0 || echo 1)" "rc=$RC $MS ms"
req POST /_mock/latency -d '{"ms":200,"jitter_ms":50}'
expect "latency with jitter set" 200 '{"ms":200,"jitter_ms":50}'
check "stats show the latency" \
  "$([ "$(stat latency_ms)" = 200 ] && [ "$(stat latency_jitter_ms)" = 50 ] && echo 0 || echo 1)" "$(stats)"
LATS=""
for i in $(seq 8); do
  send_text 82 "jit-$i"
  LATS="$LATS $MS"
done
check "each answer waits at least ms - jitter" \
  "$(printf '%s\n' $LATS | awk '$1 < 150 || $1 > 1000 { bad = 1 } END { exit bad }' && echo 0 || echo 1)" "$LATS"
check "the jitter varies the latency" \
  "$([ "$(printf '%s\n' $LATS | sort -n | sed -n '1p;$p' | paste -sd' ' | awk '{ print ($2 - $1 >= 10) }')" = 1 ] && echo 0 || echo 1)" "$LATS"
for i in $(seq 50); do
  [ "$i" -gt 1 ] && echo next
  printf 'url = "%s/v2/messages"\noutput = "/dev/null"\nsilent\nheader = "x-APIKey: test-key"\n' "$BASE"
  printf 'header = "Content-Type: application/json"\ndata = "%s"\n' "$(text_body 83 "lpar-$i" | sed 's/"/\\"/g')"
done >"$TMP/lpar.cfg"
reset
req POST /_mock/latency -d '{"ms":200,"jitter_ms":50}'
T0=$(date +%s%N)
curl -s --parallel --parallel-immediate --parallel-max 100 -K "$TMP/lpar.cfg" 2>/dev/null
ELAPSED=$((($(date +%s%N) - T0) / 1000000))
check "50 concurrent requests at 200 ms latency overlap (not 50 x 200 ms)" \
  "$([ $ELAPSED -lt 2500 ] && [ $ELAPSED -ge 150 ] && [ "$(stat accepted)" = 50 ] && echo 0 || echo 1)" \
  "$ELAPSED ms, accepted=$(stat accepted)"
req POST /_mock/ratelimit -d '{"per_minute":1}'
send_text 84 rl-1
send_text 84 rl-2
check "a limiter 429 waits the latency too" "$([ "$CODE" = 429 ] && [ "$MS" -ge 150 ] && echo 0 || echo 1)" \
  "$CODE $MS ms"
req POST /_mock/latency -d '{"ms":10,"jitter_ms":20}'
expect "jitter above ms rejected" 400 '{"error":{"message":"jitter_ms must not exceed ms"}}'
req POST /_mock/latency -d '{"ms":-1}'
expect "negative latency rejected" 400
req POST /_mock/latency -d '{"ms":1,"bogus":1}'
expect "unknown latency key rejected" 400
req GET /_mock/latency
expect "a rejected latency changes nothing" 200 '{"ms":200,"jitter_ms":50}'
reset
req GET /_mock/latency
expect "reset puts back the command line's latency (none)" 200 '{"ms":0,"jitter_ms":0}'

# ---------------------------------------------------------------- robustness
exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GARBAGE \001\002\003 NOT HTTP\r\n\r\n' >&3 && timeout 2 cat <&3 >/dev/null 2>&1
exec 3>&- 3<&-
exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'POST /v2/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort' >&3
exec 3>&- 3<&-
exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'POST /v2/messages HTTP/1.1\r\nHost: x\r\nx-APIKey: test-key\r\nContent-Type: multipart/form-data; boundary=\r\nConnection: close\r\nContent-Length: 4\r\n\r\n--\r\n' >&3 && timeout 2 cat <&3 >/dev/null 2>&1
exec 3>&- 3<&-
send_text 71 survived
expect "alive after malformed input" 200

# ---------------------------------------------------------------- TLS
if command -v openssl >/dev/null 2>&1 &&
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 \
    -subj /CN=127.0.0.1 >/dev/null 2>&1; then
  start_mock tls --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" --quiet
  TLS_BASE=https://127.0.0.1:$PORT
  CODE=$(curl -sk -o "$TMP/body" -w '%{http_code}' -H 'x-APIKey: test-key' -H 'Content-Type: application/json' \
    --data-binary "$(text_body 1 tls)" "$TLS_BASE/v2/messages")
  check "TLS: HTTPS send" "$([ "$CODE" = 200 ] && grep -q message_id "$TMP/body" && echo 0 || echo 1)" "$CODE"
  CODE=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/_mock/health")
  check "TLS: plain HTTP not served" "$([ "$CODE" != 200 ] && echo 0 || echo 1)" "$CODE"
  curl -sk -X POST -o /dev/null "$TLS_BASE/_mock/reset"
  # two requests on one connection, then two connections from one client
  # (which offers to resume its first session on the second), then stats
  curl -sk -o /dev/null -o /dev/null "$TLS_BASE/_mock/health" "$TLS_BASE/_mock/health"
  curl -sk -H 'Connection: close' -o /dev/null -o /dev/null "$TLS_BASE/_mock/health" "$TLS_BASE/_mock/health"
  S=$(curl -sk "$TLS_BASE/_mock/stats")
  check "TLS: one handshake per connection, counted" \
    "$(printf %s "$S" | grep -q '"connections":4,.*"tls_handshakes":4,"tls_resumed":0' && echo 0 || echo 1)" "$S"
  curl -sk -o /dev/null -o /dev/null -H 'x-APIKey: test-key' "$TLS_BASE/v2/nothing" "$TLS_BASE/v2/nothing"
  S=$(curl -sk "$TLS_BASE/_mock/stats")
  check "TLS: v2_connections counts only connections that carried /v2 requests" \
    "$(printf %s "$S" | grep -q '"connections":6,.*"v2_connections":1,"tls_handshakes":6' && echo 0 || echo 1)" "$S"
  stop_mock "$PID" TERM
  start_mock tlslat --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" --latency-ms 100 --quiet
  T0=$(date +%s%N)
  CODE=$(curl -sk -o "$TMP/body" -w '%{http_code}' -H 'x-APIKey: test-key' -H 'Content-Type: application/json' \
    --data-binary "$(text_body 1 tls-lat)" "https://127.0.0.1:$PORT/v2/messages")
  ELAPSED=$((($(date +%s%N) - T0) / 1000000))
  check "TLS: latency from the command line" "$([ "$CODE" = 200 ] && [ $ELAPSED -ge 100 ] && echo 0 || echo 1)" "$CODE $ELAPSED ms"
  curl -sk -X POST -o /dev/null "https://127.0.0.1:$PORT/_mock/reset"
  S=$(curl -sk "https://127.0.0.1:$PORT/_mock/stats")
  check "TLS: reset keeps the command line's latency" \
    "$(printf %s "$S" | grep -q '"latency_ms":100,"latency_jitter_ms":0' && echo 0 || echo 1)" "$S"
  stop_mock "$PID" TERM
else
  echo "skip - TLS (openssl unavailable)"
fi

# ---------------------------------------------------------------- webhooks & GET /v2/messages
# A second mock is the receiver (/_mock/inbox); perl's JSON::PP reads JSON.
jget() { perl -MJSON::PP -0777 -e 'my $j = decode_json(<STDIN>); my $e = $ARGV[0]; print eval $e' "$1"; }
inbox() { curl -s "$RECV/_mock/inbox"; }
inbox_n() { inbox | jget 'scalar @$j'; }
# statuses in the inbox, in arrival order: "Sending Success ..."
inbox_statuses() { inbox | jget 'join " ", map { decode_json($_->{body})->{payload}{message}{status} } @$j'; }
wait_for() { # wait_for SECONDS COMMAND... : until COMMAND succeeds
  local t=$(($1 * 20)) i
  shift
  for i in $(seq "$t"); do "$@" && return 0; sleep 0.05; done
  return 1
}
pending_zero() { [ "$(stat webhooks_pending)" = 0 ]; }
get_list() { req GET "/v2/messages?$1" -H "x-APIKey: test-key"; }
if command -v openssl >/dev/null && perl -MJSON::PP -e 1 2>/dev/null &&
  openssl genpkey -algorithm ed25519 -out "$TMP/wh.pem" 2>/dev/null; then
  openssl pkey -in "$TMP/wh.pem" -pubout -out "$TMP/wh.pub" 2>/dev/null
  start_mock recv --quiet
  RECV=$BASE
  start_mock wh --quiet --webhook-url "$RECV/_mock/inbox" --webhook-key "$TMP/wh.pem"
  WH_PID=$PID
  req GET /_mock/webhooks
  check "webhooks: public key of --webhook-key in GET /_mock/webhooks" \
    "$([ "$(printf %s "$BODY" | jget '$j->{public_key}')" = "$(openssl pkey -in "$TMP/wh.pem" -pubout -outform DER | base64 -w0)" ] &&
      [ "$(printf %s "$BODY" | jget '$j->{url}')" = "$RECV/_mock/inbox" ] && echo 0 || echo 1)" "$BODY"
  req POST /_mock/webhooks -d '{"delay_ms":300,"backoff_ms":20}'
  expect "webhooks: configure" 200
  send_text 901 'hello \"webhook\"'
  WID=$(msgid)
  get_list conversation_id=901
  check "GET /v2/messages: Sending before delay_ms" \
    "$([ "$(printf %s "$BODY" | jget '$j->{messages}[0]{status}')" = Sending ] && echo 0 || echo 1)" "$BODY"
  wait_for 5 eval '[ "$(inbox_n)" = 2 ]'
  check "webhooks: Sending then Success" "$([ "$(inbox_statuses)" = "Sending Success" ] && echo 0 || echo 1)" "$(inbox_statuses)"
  check "webhooks: message_updated with the message's fields" \
    "$(inbox | jget 'my $m = decode_json($j->[1]{body}); my $g = $m->{payload}{message};
        ($m->{type} eq "message_updated" && $g->{id} == '"$WID"' && $g->{conversation_id} == 901 &&
         $g->{content_type} eq "Text" && $g->{content} eq "hello \"webhook\"" && $g->{sender_type} eq "User" &&
         !$g->{is_deleted} && $m->{payload}{conversation}{id} == 901 && defined $m->{payload}{org_id}
         && $g->{date} =~ /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$/) ? 0 : 1')" "$(inbox)"
  SIGOK=0
  for n in 1 2; do
    curl -s -D "$TMP/wh.hdrs" -o "$TMP/wh.body" "$RECV/_mock/inbox/$n"
    tr -d '\r' <"$TMP/wh.hdrs" | sed -n 's/^X-Partoo-Signature-v1: //ip' | base64 -d >"$TMP/wh.sig"
    openssl pkeyutl -verify -pubin -inkey "$TMP/wh.pub" -rawin -in "$TMP/wh.body" -sigfile "$TMP/wh.sig" >/dev/null 2>&1 ||
      SIGOK=1
  done
  check "webhooks: X-Partoo-Signature-v1 verifies with the public key" "$SIGOK"
  sed 's/Success/Failed/' "$TMP/wh.body" >"$TMP/wh.bad"
  check "webhooks: a tampered body does not verify" \
    "$(openssl pkeyutl -verify -pubin -inkey "$TMP/wh.pub" -rawin -in "$TMP/wh.bad" -sigfile "$TMP/wh.sig" >/dev/null 2>&1 && echo 1 || echo 0)"
  get_list conversation_id=901
  check "GET /v2/messages: Success after the webhook" \
    "$([ "$(printf %s "$BODY" | jget '$j->{messages}[0]{status}')" = Success ] && echo 0 || echo 1)" "$BODY"
  check "stats: webhooks sent and answered 2xx" \
    "$([ "$(stat webhooks_sent)" = 2 ] && [ "$(stat webhooks_2xx)" = 2 ] && [ "$(stat get_messages)" = 2 ] && echo 0 || echo 1)" "$(stats)"

  # 5xx: retried 5 times with exponential backoff, then given up
  reset
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  curl -s -X POST "$RECV/_mock/inbox/answers" -d '{"status":500}' >/dev/null
  req POST /_mock/webhooks -d '{"delay_ms":0,"send_sending":false,"backoff_ms":30}'
  send_text 902 five-hundred
  wait_for 10 eval '[ "$(stat webhooks_given_up)" = 1 ]'
  check "webhooks: 5xx retried 5 times, then given up" \
    "$([ "$(inbox_n)" = 6 ] && [ "$(stat webhooks_5xx)" = 6 ] && [ "$(stat webhooks_retries)" = 5 ] &&
      [ "$(stat webhooks_given_up)" = 1 ] && echo 0 || echo 1)" "$(stats)"
  check "webhooks: backoff doubles (30, 60, 120, 240, 480 ms at least)" \
    "$(inbox | jget 'my $ok = 0; for my $k (1..5) { $ok = 1 if $j->[$k]{time_us} - $j->[$k-1]{time_us} < 30000 * 2 ** ($k-1) } $ok')"
  # 5xx twice, then 200
  reset
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  curl -s -X POST "$RECV/_mock/inbox/answers" -d '{"next":[{"status":503,"count":2}]}' >/dev/null
  req POST /_mock/webhooks -d '{"delay_ms":0,"send_sending":false,"backoff_ms":20}'
  send_text 902 recovers
  wait_for 5 eval '[ "$(stat webhooks_2xx)" = 1 ]'
  check "webhooks: 5xx retried until a 2xx" \
    "$([ "$(inbox_n)" = 3 ] && [ "$(stat webhooks_5xx)" = 2 ] && [ "$(stat webhooks_given_up)" = 0 ] && echo 0 || echo 1)" "$(stats)"
  # 4xx: given up at once
  reset
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  curl -s -X POST "$RECV/_mock/inbox/answers" -d '{"status":400}' >/dev/null
  req POST /_mock/webhooks -d '{"delay_ms":0,"send_sending":false,"backoff_ms":20}'
  send_text 902 four-hundred
  wait_for 5 pending_zero
  sleep 0.3
  check "webhooks: 4xx not retried" \
    "$([ "$(inbox_n)" = 1 ] && [ "$(stat webhooks_4xx)" = 1 ] && [ "$(stat webhooks_retries)" = 0 ] &&
      [ "$(stat webhooks_given_up)" = 1 ] && echo 0 || echo 1)" "$(stats)"
  # connection failures: retried like a 5xx
  reset
  req POST /_mock/webhooks -d '{"url":"http://127.0.0.1:1/refused","delay_ms":0,"send_sending":false,"backoff_ms":10}'
  send_text 902 refused
  wait_for 5 eval '[ "$(stat webhooks_given_up)" = 1 ]'
  check "webhooks: connection refused retried 5 times, then given up" \
    "$([ "$(stat webhooks_errors)" = 6 ] && [ "$(stat webhooks_given_up)" = 1 ] && echo 0 || echo 1)" "$(stats)"
  req POST /_mock/webhooks -d "{\"url\":\"$RECV/_mock/inbox\"}"

  # rate_drop 1: nothing sent, but the API knows the status
  reset
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  req POST /_mock/webhooks -d '{"delay_ms":100,"rate_drop":1}'
  for i in 1 2 3; do send_text 903 "dropped-$i"; done
  sleep 0.4
  get_list conversation_id=903
  check "webhooks: rate_drop 1 sends nothing" \
    "$([ "$(inbox_n)" = 0 ] && [ "$(stat webhooks_sent)" = 0 ] && [ "$(stat webhooks_dropped)" = 6 ] && echo 0 || echo 1)" "$(stats)"
  check "GET /v2/messages: statuses of messages whose webhooks were dropped" \
    "$([ "$(printf %s "$BODY" | jget 'join ",", map { $_->{status} } @{$j->{messages}}')" = Success,Success,Success ] &&
      echo 0 || echo 1)" "$BODY"
  # rate_failed 1
  req POST /_mock/webhooks -d '{"delay_ms":100,"rate_failed":1}'
  send_text 904 fails
  FID=$(msgid)
  wait_for 5 eval '[ "$(inbox_n)" = 2 ]'
  get_list conversation_id=904
  check "webhooks: rate_failed 1 -> Sending then Failed, API says Failed" \
    "$([ "$(inbox_statuses)" = "Sending Failed" ] &&
      [ "$(printf %s "$BODY" | jget '$j->{messages}[0]{status}')" = Failed ] && echo 0 || echo 1)" "$(inbox_statuses) $BODY"
  # a retry starts over: Sending, then Success
  req POST /_mock/webhooks -d '{"delay_ms":100}'
  req POST "/v2/messages/$FID/retry" -H "x-APIKey: test-key"
  wait_for 5 eval '[ "$(inbox_n)" = 4 ]'
  check "webhooks: retry -> Sending then Success again" \
    "$([ "$(inbox_statuses)" = "Sending Failed Sending Success" ] && echo 0 || echo 1)" "$(inbox_statuses)"
  # duplicates and reordering
  reset
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  req POST /_mock/webhooks -d '{"delay_ms":100,"rate_duplicate":1}'
  send_text 905 twice
  wait_for 5 eval '[ "$(inbox_n)" = 4 ]'
  check "webhooks: rate_duplicate 1 delivers every event twice" \
    "$([ "$(inbox_statuses)" = "Sending Sending Success Success" ] && [ "$(stat webhooks_duplicated)" = 2 ] && echo 0 || echo 1)" \
    "$(inbox_statuses)"
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  req POST /_mock/webhooks -d '{"delay_ms":100,"rate_reorder":1}'
  send_text 905 reordered
  wait_for 5 eval '[ "$(inbox_n)" = 2 ]'
  check "webhooks: rate_reorder 1 delivers Success before Sending" \
    "$([ "$(inbox_statuses)" = "Success Sending" ] && echo 0 || echo 1)" "$(inbox_statuses)"
  # /_mock/status: the API's truth set directly
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  req POST /_mock/status -d "{\"id\":$WID,\"status\":\"Failed\"}"
  expect "status: set" 200 "{\"status\":\"ok\",\"id\":$WID,\"message_status\":\"Failed\",\"webhook_queued\":false}"
  get_list conversation_id=901
  check "status: GET /v2/messages shows the status set, no webhook sent" \
    "$([ "$(printf %s "$BODY" | jget '$j->{messages}[0]{status}')" = Failed ] && [ "$(inbox_n)" = 0 ] && echo 0 || echo 1)" "$BODY"
  req POST /_mock/status -d "{\"id\":$WID,\"status\":\"Success\",\"webhook\":true}"
  wait_for 5 eval '[ "$(inbox_n)" = 1 ]'
  check "status: webhook true sends one event" "$([ "$(inbox_statuses)" = Success ] && echo 0 || echo 1)" "$(inbox_statuses)"
  req POST /_mock/status -d '{"id":999,"status":"Success"}'
  expect "status: unknown id" 404
  req POST /_mock/status -d "{\"id\":$WID,\"status\":\"Delivered\"}"
  expect "status: unknown status" 400
  req POST /_mock/webhooks -d '{"rate_failed":2}'
  expect "webhooks: bad rate rejected" 400
  req POST /_mock/webhooks -d '{"colour":1}'
  expect "webhooks: unknown key rejected" 400
  req POST /_mock/webhooks -d '{"key_pem":"not a key"}'
  expect "webhooks: bad key rejected" 400

  # pagination: 5 messages, per_page=2 -> 3 pages, newest first
  for i in 1 2 3 4 5; do send_text 906 "page-$i"; done
  LASTID=$(msgid)
  PAGES=0 IDS="" CUR="" COUNTS=""
  while :; do
    get_list "conversation_id=906&per_page=2${CUR:+&cursor=$CUR}"
    [ "$CODE" = 200 ] || break
    PAGES=$((PAGES + 1))
    IDS="$IDS $(printf %s "$BODY" | jget 'join " ", map { $_->{id} } @{$j->{messages}}')"
    COUNTS="$COUNTS $(printf %s "$BODY" | jget '$j->{count}')"
    CUR=$(printf %s "$BODY" | jget '$j->{next_cursor} // ""')
    [ -n "$CUR" ] && [ "$PAGES" -lt 10 ] || break
  done
  WANT=""
  for i in 0 1 2 3 4; do WANT="$WANT $((LASTID - i))"; done
  check "GET /v2/messages: per_page=2 over 5 messages -> 3 pages, newest first, next_cursor null at the end" \
    "$([ "$PAGES" = 3 ] && [ "$IDS" = "$WANT" ] && [ "$COUNTS" = " 5 5 5" ] &&
      printf %s "$BODY" | grep -q '"next_cursor":null}$' && echo 0 || echo 1)" "pages=$PAGES ids=$IDS counts=$COUNTS $BODY"
  get_list conversation_id=906
  check "GET /v2/messages: default per_page holds all 5" \
    "$(printf %s "$BODY" | jget '(@{$j->{messages}} == 5 && !defined $j->{next_cursor}) ? 0 : 1')" "$BODY"
  get_list conversation_id=99999
  expect "GET /v2/messages: conversation without messages" 200 '{"messages":[],"count":0,"next_cursor":null}'
  get_list "conversation_id=906&per_page=101"
  expect "GET /v2/messages: per_page=101 -> 400" 400 \
    '{"errors":{"query":{"per_page":["Must be greater than or equal to 1 and less than or equal to 100."]}}}'
  get_list "conversation_id=906&per_page=0"
  expect "GET /v2/messages: per_page=0 -> 400" 400
  get_list "conversation_id=906&per_page=x"
  expect "GET /v2/messages: per_page not an integer -> 400" 400 '{"errors":{"query":{"per_page":["Not a valid integer."]}}}'
  get_list "conversation_id=abc"
  expect "GET /v2/messages: conversation_id not an integer -> 400" 400
  get_list "conversation_id=906&cursor=bogus!"
  expect "GET /v2/messages: bad cursor -> 400" 400 '{"errors":{"query":{"cursor":["Invalid cursor."]}}}'
  get_list "conversation_id=906&per_page=2"
  CUR=$(printf %s "$BODY" | jget '$j->{next_cursor}')
  get_list "conversation_id=905&cursor=$CUR"
  expect "GET /v2/messages: a cursor of another conversation -> 400" 400
  req GET "/v2/messages?conversation_id=906"
  expect "GET /v2/messages: needs the key" 401 "$UNAUTH"
  req POST /_mock/ratelimit -d '{"per_minute":1}'
  get_list conversation_id=906
  get_list conversation_id=906
  expect "GET /v2/messages: goes through the rate limiter" 429

  # reset keeps the destination, drops the queue; no URL -> nothing sent
  reset
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  req POST /_mock/webhooks -d '{"delay_ms":60000}'
  send_text 907 queued
  reset
  curl -s -X POST "$RECV/_mock/reset" >/dev/null
  req GET /_mock/webhooks
  check "reset: destination kept, behaviour back to defaults, queue dropped" \
    "$([ "$(printf %s "$BODY" | jget '$j->{url}')" = "$RECV/_mock/inbox" ] &&
      [ "$(printf %s "$BODY" | jget '$j->{delay_ms}')" = 100 ] && [ "$(stat webhooks_pending)" = 0 ] && echo 0 || echo 1)" "$BODY"
  req POST /_mock/webhooks -d '{"url":null}'
  send_text 907 no-url
  sleep 0.3
  check "webhooks: url null -> nothing sent" "$([ "$(stat webhooks_events)" = 0 ] && [ "$(inbox_n)" = 0 ] && echo 0 || echo 1)" "$(stats)"
  stop_mock "$WH_PID" TERM
  check "webhooks: mock with senders exits 0" "$([ "$STOP_STATUS" = 0 ] && echo 0 || echo 1)" "$STOP_STATUS"
  "$BIN" --webhook-key "$TMP/missing.pem" --quiet >/dev/null 2>&1
  ST=$?
  check "--webhook-key unreadable -> exit 1" "$([ "$ST" = 1 ] && echo 0 || echo 1)" "$ST"
  BASE=http://127.0.0.1:$(cat "$TMP/main.port")
  check "main mock (no --webhook-url) sent no webhook" \
    "$([ "$(stat webhooks_events)" = 0 ] && [ "$(stat webhooks_sent)" = 0 ] && echo 0 || echo 1)" "$(stats)"
else
  echo "skip - webhooks (openssl with Ed25519 or perl JSON::PP unavailable)"
fi

# ---------------------------------------------------------------- CLI
"$BIN" --bogus >/dev/null 2>&1
ST=$?
check "unknown option -> exit 2" "$([ "$ST" = 2 ] && echo 0 || echo 1)"
"$BIN" --latency-ms 100 --latency-jitter-ms 101 >/dev/null 2>&1
ST=$?
check "--latency-jitter-ms above --latency-ms -> exit 2" "$([ "$ST" = 2 ] && echo 0 || echo 1)"
start_mock defaults --quiet
KEY=test-key send_text 1 default-key
expect "default key is test-key" 200
KEY=other-key send_text 1 x
expect "only test-key by default" 401
curl -s -o /dev/null -H 'x-APIKey: test-key' -H 'Content-Type: application/json' \
  --data-binary "$(text_body 5009000 pending)" "$BASE/v2/messages" &
CPID=$!
sleep 0.3
stop_mock "$PID" TERM
check "SIGTERM exits 0 (with a delayed request pending)" "$([ "$STOP_STATUS" = 0 ] && echo 0 || echo 1)" "$STOP_STATUS"
wait "$CPID" 2>/dev/null

# main mock: SIGINT also exits 0
stop_mock "$MAIN_PID" INT
check "SIGINT exits 0" "$([ "$STOP_STATUS" = 0 ] && echo 0 || echo 1)" "$STOP_STATUS"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
