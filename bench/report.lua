-- wrk script: the request comes from the environment, the results go out as JSON.
--
-- BENCH_METHOD, BENCH_BODY, BENCH_CONTENT_TYPE and BENCH_AUTHORIZATION shape
-- every request; done() prints one line "BENCH_JSON {...}" with wrk's own
-- counts and latency percentiles (microseconds), which bench/load.py reads.

wrk.method = os.getenv("BENCH_METHOD") or "GET"

-- Several bodies, one per line, are sent in turn (logins of several users).
local bodies = {}
for body in string.gmatch(os.getenv("BENCH_BODY") or "", "[^\n]+") do
   table.insert(bodies, body)
end
if #bodies == 1 then
   wrk.body = bodies[1]
elseif #bodies > 1 then
   local turn = 0
   function request()
      turn = turn % #bodies + 1
      return wrk.format(nil, nil, nil, bodies[turn])
   end
end

local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type ~= nil and content_type ~= "" then
   wrk.headers["Content-Type"] = content_type
end

local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization ~= nil and authorization ~= "" then
   wrk.headers["Authorization"] = authorization
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
         .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout
   ))
end
