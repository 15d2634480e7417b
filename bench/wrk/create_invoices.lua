-- wrk -t1 -c64 -s create_invoices.lua: POST /invoices with ids inv_b1, inv_b2, ...
-- Fills the server with invoices for pay.lua (run it with -t1, so that one
-- counter numbers every request).
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/invoices", {["Content-Type"] = "application/json"},
                    string.format('{"id":"inv_b%d","amount":1000}', n))
end
