"""The journal: every step of every unit as a hash-chained event, durable before it is
acknowledged."""
