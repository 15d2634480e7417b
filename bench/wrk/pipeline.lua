-- wrk -s pipeline.lua: 16 pipelined GET /invoices/inv_get per write (scripts/bench creates it first).
-- wrk counts each of the 16 answers as a request.
init = function(args)
    local requests = {}
    for i = 1, 16 do
        requests[i] = wrk.format("GET", "/invoices/inv_get")
    end
    pipelined = table.concat(requests)
end

request = function()
    return pipelined
end
