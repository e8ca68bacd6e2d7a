"""The contract with oned: the action entry point, its context, the sudo helper and hook scripts."""
