"""Policy: who may call (keys, budgets, limits), what data may go where, and the audit trail."""
