"""Where Podium keeps what outlives a request: traces, feedback, keys, audit."""
