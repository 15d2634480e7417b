-- wrk -t1 -c64 -s pay.lua: POST /invoices/inv_b<n>/pay, each request with its
-- own invoice and a unique Idempotency-Key. Run create_invoices.lua first, for
-- longer, so that every pay finds a PENDING invoice (wrk counts any non-2xx).
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/invoices/inv_b" .. n .. "/pay",
                    {["Content-Type"] = "application/json", ["Idempotency-Key"] = "key-" .. n},
                    '{"payment_method":"pm_card_ok"}')
end
