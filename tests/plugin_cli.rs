//! Black-box tests of `duplex plugin`.
