//! Address and prefix allocation: computed IA_NA addresses (bit-127 halves) and IA_PD free bitmaps.
