"""Operations: what the product tells its operators — structured logs carrying the request and task ids, error
reports to Sentry stripped of PHI, Prometheus metrics of the send pipeline (ADR 0018, docs/operations.md).

The bottom of the house: it imports no app of ours, so every app may call into it; apps hand it what only they
know (the database's queue depth) by registering a source in their AppConfig.ready, as they do with audit's
verifiers."""
