-- post.lua -- wrk script for benchmarking the Partoo mock (or anything that
-- speaks its API): every request is POST /v2/messages with a valid Text JSON
-- body and the API key.  Usage:
--   wrk -t2 -c64 -d10s -s test/mock/post.lua http://127.0.0.1:PORT/v2/messages
-- Environment: PARTOO_KEY (default test-key), PARTOO_CONVERSATION (default 12345).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-APIKey"] = os.getenv("PARTOO_KEY") or "test-key"
wrk.body = '{"conversation_id":' .. (os.getenv("PARTOO_CONVERSATION") or "12345") ..
  ',"content_type":"Text","date":"2026-11-23T10:00:00.123456Z","content":"benchmark message"}'
