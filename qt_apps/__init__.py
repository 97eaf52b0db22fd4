"""Applications at the top of the stack: scripts that drive the public commands (the demo)."""
