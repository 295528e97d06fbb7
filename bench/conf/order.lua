-- wrk script of the POST targets (bench/run: nginx-post, gateway-post, gateway-orders,
-- gateway-orders-redis): POST <url> with a RaaS v2 order body whose externalRefID is unique
-- per request: "bench-<nonce>-<thread>-<counter>". bench/run passes a nonce that differs for
-- every wrk invocation (warm-ups and rounds too), so no reference ever repeats across the run:
-- every order is a first order, never the ledger's cheaper "repeat of a completed order" path.
-- Usage: wrk ... -s order.lua URL -- NONCE ACCOUNT CUSTOMER
-- (The -H headers of the command line, Authorization and X-Forwarded-For, are kept.)

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

local nonce, account, customer
local counter = 0

function init(args)
   nonce = args[1] or "0"
   account = args[2] or "A-BENCH-1"
   customer = args[3] or "C-BENCH"
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

-- ~330 bytes, the shape of a small RaaS v2 order. amount 10: the spend limit is far above
-- what any run can reach. No recipient's name or email is needed for the gateway's rules.
function request()
   counter = counter + 1
   local body = '{"accountIdentifier":"' .. account .. '","customerIdentifier":"' .. customer ..
      '","amount":10,"utid":"U000001","externalRefID":"bench-' .. nonce .. '-' .. tid .. '-' .. counter ..
      '","sendEmail":false,"recipient":{"email":"recipient@example.com","firstName":"Bench","lastName":"Recipient"},' ..
      '"sender":{"email":"sender@example.com","firstName":"Bench","lastName":"Sender"},"message":"bench order"}'
   return wrk.format(nil, nil, nil, body)
end
