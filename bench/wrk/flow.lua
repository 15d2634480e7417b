-- wrk -s flow.lua -- PREFIX: create+pay flows. Each create's answer names a
-- PENDING invoice; the next request on any connection pays it (with its own
-- Idempotency-Key), otherwise a new invoice is created. Invoice ids start
-- with PREFIX, so that several wrk runs against several servers do not meet.
local prefix = "f"
local n = 0
local created = {}
init = function(args)
  if args[1] then prefix = args[1] end
end
request = function()
  local id = table.remove(created)
  if id then
    return wrk.format("POST", "/invoices/" .. id .. "/pay",
                      {["Content-Type"] = "application/json", ["Idempotency-Key"] = "k-" .. id},
                      '{"payment_method":"pm_card_ok"}')
  end
  n = n + 1
  return wrk.format("POST", "/invoices", {["Content-Type"] = "application/json"},
                    string.format('{"id":"inv_%s%d","amount":1000}', prefix, n))
end
response = function(status, headers, body)
  if status == 201 and not string.find(body, '"invoice_id"', 1, true) then
    local id = string.match(body, '"id":"(inv_[%w_]+)"')
    if id then table.insert(created, id) end
  end
end
