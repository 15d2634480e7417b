#pragma once
// Forward declarations of the library's main types, for headers that only
// name them.

namespace payments {

struct Error;
class Engine;
class EngineBuilder;
struct EngineOptions;

namespace domain {
class Currency;
class Money;
class Invoice;
class Payment;
class Random;
struct RetryPolicy;
template <class Tag>
class Id;
struct InvoiceIdTag;
struct PaymentIdTag;
struct EventIdTag;
struct CorrelationIdTag;
using InvoiceId = Id<InvoiceIdTag>;
using PaymentId = Id<PaymentIdTag>;
using EventId = Id<EventIdTag>;
using CorrelationId = Id<CorrelationIdTag>;
} // namespace domain

namespace application {
class Clock;
class EventBus;
class IdempotencyStore;
class Logger;
class Metrics;
class PaymentGateway;
class PaymentProcessor;
class PaymentService;
class Scheduler;
class Store;
class Subscription;
struct Ports;
} // namespace application

namespace infrastructure {
class AsioEventBus;
class AsioScheduler;
class InMemoryIdempotencyStore;
class InMemoryStore;
class JsonLogger;
class ManualClock;
class ManualScheduler;
class MetricsRegistry;
class SimulatedGateway;
class SystemClock;
} // namespace infrastructure

} // namespace payments
