-- wrk script for benchmarks/run.py: one XCAP operation against a random one of the seeded documents.
--
-- Environment (set by run.py):
--   XCAP_OP        get_doc | get_el | get_att | put_doc | put_el | mix (90 % get_doc, 10 % put_doc)
--   XCAP_DOCS      number of seeded documents (users user0..user<N-1>@example.com, document "index")
--   XCAP_TEMPLATE  file with the ~1 KiB resource-lists document; "@N@" is replaced by a counter so
--                  every PUT changes the document
--   XCAP_USER      user-name prefix (default "user")
-- done() prints one line "XCAPJSON {...}" with requests, errors and latency percentiles (microseconds).

local op = os.getenv("XCAP_OP") or "get_doc"
local ndocs = tonumber(os.getenv("XCAP_DOCS") or "100")
local user = os.getenv("XCAP_USER") or "user"
local template_path = os.getenv("XCAP_TEMPLATE")

local LIST = "/~~/resource-lists/list%5B@name=%22friends%22%5D"
local EL = LIST .. "/entry%5B3%5D"
local ATT = EL .. "/@uri"
local PUT_EL = LIST .. "/entry%5B@uri=%22sip:bench@example.com%22%5D"
local DOC_TYPE = "application/resource-lists+xml"
local EL_TYPE = "application/xcap-el+xml"

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local head, tail = "", ""
local counter = 0

function init(args)
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
   counter = (tid or 0) * 10000000
   if template_path then
      local f = assert(io.open(template_path, "rb"))
      local text = f:read("*a")
      f:close()
      local at = string.find(text, "@N@", 1, true)
      head = string.sub(text, 1, at - 1)
      tail = string.sub(text, at + 3)
   end
end

local function doc_path()
   return "/xcap-root/resource-lists/users/sip:" .. user .. math.random(0, ndocs - 1) .. "@example.com/index"
end

local function put_doc()
   counter = counter + 1
   return wrk.format("PUT", doc_path(), {["Content-Type"] = DOC_TYPE}, head .. string.format("%09d", counter) .. tail)
end

function request()
   if op == "get_doc" then
      return wrk.format("GET", doc_path())
   elseif op == "get_el" then
      return wrk.format("GET", doc_path() .. EL)
   elseif op == "get_att" then
      return wrk.format("GET", doc_path() .. ATT)
   elseif op == "put_doc" then
      return put_doc()
   elseif op == "put_el" then
      counter = counter + 1
      local body = '<entry uri="sip:bench@example.com"><display-name>Bench ' .. string.format("%09d", counter) ..
         '</display-name></entry>'
      return wrk.format("PUT", doc_path() .. PUT_EL, {["Content-Type"] = EL_TYPE}, body)
   elseif op == "mix" then
      if math.random(1, 10) == 1 then
         return put_doc()
      end
      return wrk.format("GET", doc_path())
   end
   error("unknown XCAP_OP " .. op)
end

-- The latency at these percentiles goes out too ("quantiles"), so that runs cut into slices can
-- be merged into one distribution (run.py): every 1 % up to 90, every 0.1 % up to 99.9, then more.
local grid = {}
for p = 1, 89 do grid[#grid + 1] = p end
for p = 900, 999 do grid[#grid + 1] = p / 10 end
for _, p in ipairs({99.95, 99.99}) do grid[#grid + 1] = p end  -- and 100: latency.max (wrk's percentile(100) is 0)

function done(summary, latency, requests)
   local e = summary.errors
   local quantiles = {}
   for i, p in ipairs(grid) do quantiles[i] = string.format("[%g, %d]", p, latency:percentile(p)) end
   quantiles[#quantiles + 1] = string.format("[100, %d]", latency.max)
   io.write(string.format(
      'XCAPJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
      '"timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "quantiles": [%s]}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      table.concat(quantiles, ", ")))
end
