"""Input limits, shared by the stdin reader and the parser without importing either."""

# A VM with hundreds of NICs and security-group rules is well under 1 MiB of
# base64; anything much larger is an attack or a bug, refused before decoding.
MAX_STDIN_BYTES = 16 * 1024 * 1024
