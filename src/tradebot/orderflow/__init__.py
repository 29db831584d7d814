"""orderflow stage."""
