-- wrk script: POST a unique callback per request (so none is a duplicate) and stop after a count.
-- Environment: WRK_KIND = stk | stk_failed | balance; WRK_PATH = the callback path;
-- WRK_LIMIT = requests per wrk thread (0 = until the duration ends); WRK_PREFIX = a run-unique prefix.
local kind = os.getenv("WRK_KIND") or "stk"
local path = os.getenv("WRK_PATH")
local limit = tonumber(os.getenv("WRK_LIMIT") or "0")
local prefix = os.getenv("WRK_PREFIX") or "bench"
local counter = 0
local done = 0
local thread_id = 0
local next_id = 0

function setup(thread)
    thread:set("thread_id", next_id)
    next_id = next_id + 1
end

local function body(n)
    local ref = prefix .. "-" .. thread_id .. "-" .. n
    if kind == "balance" then
        return '{"Result":{"ResultType":0,"ResultCode":0,"ResultDesc":"ok","OriginatorConversationID":"'
            .. ref .. '","ConversationID":"AG_' .. ref .. '","TransactionID":"OA90000000",'
            .. '"ResultParameters":{"ResultParameter":[{"Key":"AccountBalance","Value":'
            .. '"Working Account|KES|700000.00|700000.00|0.00|0.00"},{"Key":"BOCompletedTime","Value":"20200109125710"}]}}}'
    end
    local code, desc, meta = 0, "The service request is processed successfully.",
        ',"CallbackMetadata":{"Item":[{"Name":"Amount","Value":1.0},{"Name":"MpesaReceiptNumber","Value":"NLJ7RT61SV"},'
        .. '{"Name":"TransactionDate","Value":20191219102115},{"Name":"PhoneNumber","Value":254708374149}]}'
    if kind == "stk_failed" then
        code, desc, meta = 1032, "Request cancelled by user", ""
    end
    return '{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1","CheckoutRequestID":"ws_CO_'
        .. ref .. '","ResultCode":' .. code .. ',"ResultDesc":"' .. desc .. '"' .. meta .. '}}}'
end

function request()
    counter = counter + 1
    return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body(counter))
end

function response(status, headers, body)
    done = done + 1
    if limit > 0 and done >= limit then
        wrk.thread:stop()
    end
end
