#!/bin/sh
# Overwrites k1 and k2 in place while `target: { file: k1 }` fails k1's blocks: k1's fsync
# must fail (nack k1) and k2's must succeed (ack k2); anything else exits non-zero.
printf v2 | dd of=k1 conv=notrunc 2>/dev/null
if sync k1; then echo "k1's fsync succeeded under its fault" >&2; exit 3; fi
echo "nack k1 fsync failed" >&"$POWERCUT_ACK_FD"
printf v2 | dd of=k2 conv=notrunc 2>/dev/null
if ! sync k2; then echo "k2's fsync failed: the fault is not k1's alone" >&2; exit 4; fi
echo "ack k2 $(sha256sum k2)" >&"$POWERCUT_ACK_FD"
