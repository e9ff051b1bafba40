"""Message batches: many requests answered off the request that sent them."""
