-- wrk script for bench/portal.py: each request carries the next member's session cookie (one per line in the
-- file $COOKIES) and the User-Agent the sessions were opened with ($USER_AGENT: the portal's session
-- protection ties a session to it). Counts every answer that is not 2xx (wrk itself counts only >= 400, and a
-- lost session answers 302) and prints a one-line JSON summary.
local cookies = {}
for line in io.lines(os.getenv("COOKIES")) do
  if #line > 0 then cookies[#cookies + 1] = line end
end
local agent = os.getenv("USER_AGENT")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  not2xx = 0
  counter = id * 7919
end

function request()
  counter = counter + 1
  return wrk.format("GET", nil, {["Cookie"] = cookies[(counter % #cookies) + 1], ["User-Agent"] = agent})
end

function response(status, headers, body)
  if status < 200 or status >= 300 then not2xx = not2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("not2xx") end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "not_2xx": %d, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), bad, errors))
end
