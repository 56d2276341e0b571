"""Pure decisions (placement, rendering): specs and observed state in, decisions out; no I/O."""
