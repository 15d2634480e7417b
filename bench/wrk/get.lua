-- wrk -s get.lua: GET /invoices/inv_get (scripts/bench creates it first).
wrk.method = "GET"
wrk.path = "/invoices/inv_get"
