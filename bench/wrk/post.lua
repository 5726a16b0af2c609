-- wrk script: POST the JSON body in the file $BENCH_BODY, with $BENCH_AUTH as a bearer key if set.
-- No response() callback on purpose: it would make wrk hand every reply to Lua and slow it down;
-- wrk counts non-2xx replies itself, and bench/run.py checks that count.
local function slurp(path)
    local f = assert(io.open(path, "rb"), "cannot open BENCH_BODY file " .. tostring(path))
    local data = f:read("*a")
    f:close()
    return data
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_AUTH")
if key ~= nil and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
end
