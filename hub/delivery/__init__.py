"""Getting each delivery to its target: adapters, retry policy, circuit breaker, the deliver job."""
