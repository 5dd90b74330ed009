"""Synthetic store rows for ``make bench-store``, bulk-loaded with PostgreSQL ``COPY``.

Events look like what the webhook-service records: raw payloads in the shape
each provider posts (M-Pesa STK Push successes and cancellations, C2B
confirmations, B2C results, account balances, Stripe events), normalised
columns filled as the normalisers fill them, ids whose leading millisecond
timestamp is the time received (as ``payhook_shared.ids`` makes them), spread
evenly over the period. Each event has one delivery per endpoint of its
merchant, done, dead (a troubled endpoint fails far more often) or pending,
with the attempts that state implies, and a "payment received" email for money
coming in to merchants that have a notification address.

Rows are written as COPY text by hand (f-strings, a per-minute timestamp
prefix): a million events with their deliveries, attempts and emails is about
4 million rows, and ``json.dumps``/``strftime`` per value would take minutes.
Every value is ASCII without tab, newline or backslash, so nothing needs escaping.
Chunks are independent (each has its own seed), so they can be made in another process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import random

from payhook_shared.priority import Priority
from payhook_shared.provider_keys import provider_key

#: The default retry schedule (payhook_delivery.settings): a dead delivery made 8 attempts over ~27.6 hours.
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
DEAD_AFTER = float(sum(SCHEDULE))
DEAD_ATTEMPTS = len(SCHEDULE) + 1

EVENT_COLUMNS = ("id", "merchant_id", "provider", "type", "status", "amount_minor", "currency", "receipt",
                 "reference", "provider_ids", "phone", "result_code", "result_desc", "occurred_at",
                 "received_at", "priority", "dedupe_key", "customer_email", "details", "raw_payload", "provider_key")
DELIVERY_COLUMNS = ("id", "event_id", "endpoint_id", "merchant_id", "last_status", "last_category",
                    "delivered_at", "state", "priority", "attempts", "next_attempt_at", "lease_until",
                    "queue_name", "message_id", "last_error", "created_at", "updated_at", "round_start", "dead_at")
ATTEMPT_COLUMNS = ("delivery_id", "endpoint_id", "number", "started_at", "duration_ms", "status_code", "category", "error",
                   "response_snippet")
EMAIL_COLUMNS = ("id", "merchant_id", "event_id", "template", "recipients", "context", "dedupe_key", "sent_at",
                 "state", "priority", "attempts", "next_attempt_at", "lease_until", "queue_name", "message_id",
                 "last_error", "created_at", "updated_at")
TABLES = (("events", EVENT_COLUMNS), ("deliveries", DELIVERY_COLUMNS), ("delivery_attempts", ATTEMPT_COLUMNS),
          ("emails", EMAIL_COLUMNS))

N = "\\N"
OK = "The service request is processed successfully."
FIRST = ("John", "Grace", "Amina", "Brian", "Wanjiru", "Otieno", "Fatuma", "Kevin", "Achieng", "Mary")
LAST = ("Doe", "Kamau", "Mwangi", "Odhiambo", "Njoroge", "Wafula", "Chebet", "Mutua", "Hassan", "Kiprop")
AMOUNTS = (10, 50, 100, 250, 500, 1000, 1500, 2500, 5000, 12000)
FAILURES = (("server_error", "502", "HTTP 502", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
            ("timeout", N, "timed out after 15 s", N), ("network", N, "connection refused", N),
            ("server_error", "500", "HTTP 500", '{"error":"internal"}'))
QUEUE = {int(p): f"delivery.{p.label}" for p in Priority}
URGENT, NORMAL, LOW = int(Priority.URGENT), int(Priority.NORMAL), int(Priority.LOW)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """An endpoint generated deliveries go to; ``dead_rate`` of them die after every retry."""

    id: str
    dead_rate: float


@dataclasses.dataclass(frozen=True)
class Merchant:
    """A merchant generated events belong to: its share of them, its endpoints and notice address."""

    id: str
    name: str
    share: float
    endpoints: tuple[Endpoint, ...]
    notification_email: str | None


@dataclasses.dataclass
class Chunk:
    """COPY text for each table (in ``TABLES`` order) and how many rows of what it holds."""

    texts: tuple[str, str, str, str]
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    emails: int = 0
    states: dict[str, int] = dataclasses.field(default_factory=lambda: {"done": 0, "dead": 0, "pending": 0})


class _Clock:
    """COPY timestamps from epoch seconds, formatting the date and minute once per minute."""

    def __init__(self) -> None:
        self._minute = -1
        self._prefix = ""

    def __call__(self, t: float) -> str:
        minute = int(t // 60)
        if minute != self._minute:
            self._minute = minute
            self._prefix = dt.datetime.fromtimestamp(minute * 60, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:")
        # min(): 59.9999996 s would print as 60.000000, which is no time of day.
        return f"{self._prefix}{min(t - self._minute * 60, 59.999999):09.6f}+00"


def _hex(prefix: str, t: float, rnd: random.Random) -> str:
    return f"{prefix}_{int(t * 1000):012x}{rnd.getrandbits(64):016x}"


def _receipt(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(40):010X}"


def _phone(rnd: random.Random) -> str:
    return f"2547{10_000_000 + int(rnd.random() * 89_999_999)}"


def _daraja(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y%m%d%H%M%S")


# Each maker returns the event's columns from ``provider`` to ``result_desc``, occurred_at flag, priority,
# dedupe key, customer email, details and raw payload, plus what an email needs: (amount, receipt, ref, phone).

def _stk_ok(rnd, t, clock):
    day = _daraja(t)
    checkout = f"ws_CO_{day}{rnd.getrandbits(30):09d}"
    request = f"{10000 + int(rnd.random() * 89999)}-{rnd.getrandbits(26)}-1"
    amount = AMOUNTS[int(rnd.random() * 10)] + int(rnd.random() * 100)
    receipt, phone = _receipt(rnd), _phone(rnd)
    ids = f'{{"MerchantRequestID":"{request}","CheckoutRequestID":"{checkout}"}}'
    raw = (f'{{"Body":{{"stkCallback":{{"MerchantRequestID":"{request}","CheckoutRequestID":"{checkout}",'
           f'"ResultCode":0,"ResultDesc":"{OK}","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":{amount}.0}},'
           f'{{"Name":"MpesaReceiptNumber","Value":"{receipt}"}},{{"Name":"Balance"}},'
           f'{{"Name":"TransactionDate","Value":{day}}},{{"Name":"PhoneNumber","Value":{phone}}}]}}}}}}}}')
    return ("mpesa\tmpesa.stk_push\tsucceeded", amount * 100, "KES", receipt, checkout, ids, phone, "0", OK,
            clock(t), NORMAL, f"stk:{checkout}", N, '{"Balance":null}', raw, True)


def _stk_failed(rnd, t, clock):
    checkout = f"ws_CO_{_daraja(t)}{rnd.getrandbits(30):09d}"
    request = f"{10000 + int(rnd.random() * 89999)}-{rnd.getrandbits(26)}-1"
    ids = f'{{"MerchantRequestID":"{request}","CheckoutRequestID":"{checkout}"}}'
    raw = (f'{{"Body":{{"stkCallback":{{"MerchantRequestID":"{request}","CheckoutRequestID":"{checkout}",'
           f'"ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}}}}')
    return ("mpesa\tmpesa.stk_push\tfailed", N, "KES", N, checkout, ids, N, "1032", "Request cancelled by user",
            N, URGENT, f"stk:{checkout}", N, "{}", raw, False)


def _c2b(rnd, t, clock):
    receipt, phone = _receipt(rnd), _phone(rnd)
    amount = 10 + int(rnd.random() * 20000)
    first, last = FIRST[int(rnd.random() * 10)], LAST[int(rnd.random() * 10)]
    bill = f"INV{100000 + int(rnd.random() * 899999)}"
    balance = f"{int(rnd.random() * 10**7)}.00"
    raw = (f'{{"TransactionType":"Pay Bill","TransID":"{receipt}","TransTime":"{_daraja(t)}",'
           f'"TransAmount":"{amount}","BusinessShortCode":"600638","BillRefNumber":"{bill}","InvoiceNumber":"",'
           f'"OrgAccountBalance":"{balance}","ThirdPartyTransID":"","MSISDN":"{phone}","FirstName":"{first}",'
           f'"MiddleName":"","LastName":"{last}"}}')
    details = (f'{{"TransactionType":"Pay Bill","BillRefNumber":"{bill}","OrgAccountBalance":"{balance}",'
               f'"FirstName":"{first}","LastName":"{last}"}}')
    return ("mpesa\tmpesa.c2b.confirmation\tsucceeded", amount * 100, "KES", receipt, bill,
            f'{{"TransID":"{receipt}","BusinessShortCode":"600638"}}', phone, N, N, clock(t), NORMAL,
            f"c2b:{receipt}", N, details, raw, True)


def _b2c(rnd, t, clock):
    receipt, phone = _receipt(rnd), _phone(rnd)
    amount = 100 + int(rnd.random() * 50000)
    originator = f"{rnd.getrandbits(16):04x}-{rnd.getrandbits(16):04x}-{rnd.getrandbits(64):016x}"
    conversation = f"AG_{_daraja(t)[:8]}_{rnd.getrandbits(80):020x}"
    name = f"{phone} - {FIRST[int(rnd.random() * 10)].upper()} {LAST[int(rnd.random() * 10)].upper()}"
    done = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%d.%m.%Y %H:%M:%S")
    utility, working = int(rnd.random() * 10**7), int(rnd.random() * 10**7)
    tail = (f'{{"Key":"ReceiverPartyPublicName","Value":"{name}"}},'
            f'{{"Key":"TransactionCompletedDateTime","Value":"{done}"}},'
            f'{{"Key":"B2CUtilityAccountAvailableFunds","Value":{utility}.6}},'
            f'{{"Key":"B2CWorkingAccountAvailableFunds","Value":{working}.0}},'
            f'{{"Key":"B2CRecipientIsRegisteredCustomer","Value":"Y"}},'
            f'{{"Key":"B2CChargesPaidAccountAvailableFunds","Value":-1980.0}}')
    raw = (f'{{"Result":{{"ResultType":0,"ResultCode":0,"ResultDesc":"{OK}","OriginatorConversationID":'
           f'"{originator}","ConversationID":"{conversation}","TransactionID":"{receipt}","ResultParameters":'
           f'{{"ResultParameter":[{{"Key":"TransactionAmount","Value":{amount}}},{{"Key":"TransactionReceipt",'
           f'"Value":"{receipt}"}},{tail}]}},"ReferenceData":{{"ReferenceItem":{{"Key":"QueueTimeoutURL","Value":'
           f'"https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit"}}}}}}}}')
    details = (f'{{"ReceiverPartyPublicName":"{name}","TransactionCompletedDateTime":"{done}",'
               f'"B2CUtilityAccountAvailableFunds":{utility}.6,"B2CWorkingAccountAvailableFunds":{working}.0,'
               f'"B2CRecipientIsRegisteredCustomer":"Y","B2CChargesPaidAccountAvailableFunds":-1980.0}}')
    ids = (f'{{"ConversationID":"{conversation}","OriginatorConversationID":"{originator}",'
           f'"TransactionID":"{receipt}"}}')
    return ("mpesa\tmpesa.b2c\tsucceeded", amount * 100, "KES", receipt, N, ids, phone, "0", OK, clock(t),
            NORMAL, f"b2c-result:{conversation}:{originator}", N, details, raw, False)


def _balance(rnd, t, clock):
    originator = f"{rnd.getrandbits(16):04x}-{rnd.getrandbits(16):04x}-{rnd.getrandbits(64):016x}"
    conversation = f"AG_{_daraja(t)[:8]}_{rnd.getrandbits(80):020x}"
    balance = f"Working Account|KES|{int(rnd.random() * 10**7)}.00|{int(rnd.random() * 10**7)}.00|0.00|0.00"
    raw = (f'{{"Result":{{"ResultType":0,"ResultCode":0,"ResultDesc":"{OK}","OriginatorConversationID":'
           f'"{originator}","ConversationID":"{conversation}","TransactionID":"{_receipt(rnd)}",'
           f'"ResultParameters":{{"ResultParameter":[{{"Key":"AccountBalance","Value":"{balance}"}},'
           f'{{"Key":"BOCompletedTime","Value":{_daraja(t)}}}]}}}}}}')
    ids = f'{{"ConversationID":"{conversation}","OriginatorConversationID":"{originator}"}}'
    return ("mpesa\tmpesa.account_balance\tsucceeded", N, "KES", N, N, ids, N, "0", OK, clock(t), LOW,
            f"balance-result:{conversation}:{originator}", N, f'{{"AccountBalance":"{balance}"}}', raw, False)


def _stripe(rnd, t, clock, kind="payment_intent.succeeded"):
    event = f"evt_{rnd.getrandbits(96):024x}"
    intent = f"pi_{rnd.getrandbits(96):024x}"
    charge = f"ch_{rnd.getrandbits(96):024x}"
    customer = f"cus_{rnd.getrandbits(56):014x}"
    amount = 500 + int(rnd.random() * 50000)
    order = 100000 + int(rnd.random() * 899999)
    email = f"buyer{rnd.getrandbits(20)}@mail.example"
    if kind == "customer.created":
        thing = (f'{{"id":"{customer}","object":"customer","created":{int(t)},"email":"{email}",'
                 f'"livemode":false,"metadata":{{}},"name":"{FIRST[int(rnd.random() * 10)]}"}}')
    else:
        thing = (f'{{"id":"{intent}","object":"payment_intent","amount":{amount},"amount_capturable":0,'
                 f'"amount_received":{amount},"capture_method":"automatic","client_secret":"{intent}_secret_redacted",'
                 f'"confirmation_method":"automatic","created":{int(t) - 3},"currency":"usd",'
                 f'"customer":"{customer}","description":"Order #{order}","latest_charge":"{charge}",'
                 f'"livemode":false,"metadata":{{"order_id":"{order}"}},"payment_method":"pm_{rnd.getrandbits(96):024x}",'
                 f'"payment_method_options":{{"card":{{"installments":null,"network":null,'
                 f'"request_three_d_secure":"automatic"}}}},"payment_method_types":["card"],"receipt_email":"{email}",'
                 f'"status":"succeeded"}}')
    raw = (f'{{"id":"{event}","object":"event","api_version":"2024-06-20","created":{int(t)},"data":{{"object":'
           f'{thing}}},"livemode":false,"pending_webhooks":1,"request":{{'
           f'"id":"req_{rnd.getrandbits(56):014x}","idempotency_key":"{rnd.getrandbits(128):032x}"}},'
           f'"type":"{kind}"}}')
    if kind == "customer.created":
        # Not interpreted: status unknown, no amount, as the Stripe normaliser leaves it.
        return ("stripe\tstripe.customer.created\tunknown", N, N, N, N,
                f'{{"event_id":"{event}","livemode":false}}', N, N, N, clock(t), NORMAL, f"stripe:{event}", N,
                "{}", raw, False)
    return ("stripe\tstripe.payment_intent.succeeded\tsucceeded", amount, "USD", charge, N,
            f'{{"event_id":"{event}","livemode":false,"object_id":"{intent}"}}', N, N, N, clock(t), NORMAL,
            f"stripe:{event}", email, f'{{"metadata":{{"order_id":"{order}"}}}}', raw, True)


def _stripe_customer(rnd, t, clock):
    return _stripe(rnd, t, clock, "customer.created")


#: The mix, as cumulative shares: STK 60 % (a quarter cancelled), C2B 22 %, B2C 10 %, Stripe 6 % (one in six
#: a customer event, status unknown), account balance 2 %.
MIX = ((0.45, _stk_ok), (0.60, _stk_failed), (0.82, _c2b), (0.92, _b2c), (0.97, _stripe), (0.98, _stripe_customer),
       (1.01, _balance))


def _provider_key(ids: str) -> str:
    """The ``provider_key`` column for a row's ``provider_ids`` (COPY text), as ingest fills it."""
    key = provider_key(json.loads(ids)) if ids != N else None
    return N if key is None else key


def chunk(merchants: list[Merchant], start: float, end: float, count: int, now: float, seed: int) -> Chunk:
    """``count`` events received evenly between epoch seconds ``start`` and ``end``, with their rows."""
    rnd = random.Random(seed)
    clock = _Clock()
    total = sum(m.share for m in merchants)
    edges = []
    acc = 0.0
    for m in merchants:
        acc += m.share / total
        edges.append((acc, m))
    edges[-1] = (1.01, edges[-1][1])
    events, deliveries, attempts, emails = (io.StringIO() for _ in range(4))
    out = Chunk(texts=("", "", "", ""))
    states = out.states
    step = (end - start) / max(count, 1)
    for n in range(count):
        t = start + (n + rnd.random()) * step
        pick = rnd.random()
        merchant = next(m for edge, m in edges if pick < edge)
        pick = rnd.random()
        maker = next(f for edge, f in MIX if pick < edge)
        (kind, amount, currency, receipt, reference, ids, phone, code, desc, occurred, priority, dedupe, buyer,
         details, raw, incoming) = maker(rnd, t, clock)
        event_id = _hex("evt", t, rnd)
        received = clock(t)
        events.write(f"{event_id}\t{merchant.id}\t{kind}\t{amount}\t{currency}\t{receipt}\t{reference}\t{ids}\t"
                     f"{phone}\t{code}\t{desc}\t{occurred}\t{received}\t{priority}\t{dedupe}\t{buyer}\t{details}\t"
                     f"{raw}\t{_provider_key(ids)}\n")
        age = now - t
        queue = QUEUE[priority]
        for endpoint in merchant.endpoints:
            delivery_id = _hex("dlv", t, rnd)
            if age < 300 and rnd.random() < 0.5:
                state, tries = "pending", 0          # just received, not attempted yet
            elif rnd.random() < endpoint.dead_rate:
                # Still on the retry schedule, or out of retries.
                state, tries = ("pending", 1 + int(rnd.random() * 7)) if age < DEAD_AFTER else ("dead", DEAD_ATTEMPTS)
            else:
                state, tries = "done", 1 if rnd.random() < 0.94 else 2 + int(rnd.random() * 2)
            states[state] += 1
            at = t + 0.02 + rnd.random() * 0.3
            last = (N, N, N)
            for number in range(1, tries + 1):
                if state == "done" and number == tries:
                    attempts.write(f"{delivery_id}\t{endpoint.id}\t{number}\t{clock(at)}\t{15 + int(rnd.random() * 300)}\t200\t"
                                   f'success\t{N}\t{{"received":true}}\n')
                    last = ("200", "success", N)
                else:
                    category, status, error, snippet = FAILURES[int(rnd.random() * 4)]
                    attempts.write(f"{delivery_id}\t{endpoint.id}\t{number}\t{clock(at)}\t{5 + int(rnd.random() * 15000)}\t"
                                   f"{status}\t{category}\t{error}\t{snippet}\n")
                    last = (status, category, error)
                at += SCHEDULE[min(number, 7) - 1]
            out.attempts += tries
            created = received
            if state == "done":
                delivered = updated = clock(at - SCHEDULE[min(tries, 7) - 1])
                nxt, dead_at, message = received, N, N
            elif state == "dead":
                delivered, nxt, message = N, received, N
                dead_at = updated = clock(t + DEAD_AFTER)
            else:
                delivered, dead_at, updated = N, N, received
                nxt = clock(now + 5 + rnd.random() * 36000) if tries else received
                message = f"{rnd.getrandbits(128):032x}"
            deliveries.write(f"{delivery_id}\t{event_id}\t{endpoint.id}\t{merchant.id}\t{last[0]}\t{last[1]}\t"
                             f"{delivered}\t{state}\t{priority}\t{tries}\t{nxt}\t{N}\t{queue}\t{message}\t"
                             f"{last[2]}\t{created}\t{updated}\t0\t{dead_at}\n")
            out.deliveries += 1
        if incoming and merchant.notification_email and priority == NORMAL:
            sent = age > 120
            masked = f'"{phone[:5]}****{phone[-3:]}"' if phone != N else "null"
            ref_json = "null" if reference == N else f'"{reference}"'
            context = (f'{{"merchant_name":"{merchant.name}","event_type":"{kind.split(chr(9))[1]}",'
                       f'"amount_minor":{amount},"currency":"{currency}","receipt":"{receipt}",'
                       f'"reference":{ref_json},"phone":{masked},"occurred_at":"{received[:16]} UTC",'
                       f'"result_desc":{"null" if desc == N else chr(34) + desc + chr(34)}}}')
            emails.write(f"{_hex('eml', t, rnd)}\t{merchant.id}\t{event_id}\tpayment_received\t"
                         f'["{merchant.notification_email}"]\t{context}\tpayment_received:{event_id}\t'
                         f"{clock(t + 2) if sent else N}\t{'done' if sent else 'pending'}\t{NORMAL}\t{int(sent)}\t"
                         f"{received}\t{N}\tmail.normal\t{N}\t{N}\t{received}\t{received}\n")
            out.emails += 1
    out.events = count
    out.texts = (events.getvalue(), deliveries.getvalue(), attempts.getvalue(), emails.getvalue())
    return out
