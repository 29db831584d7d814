"""regime stage."""
