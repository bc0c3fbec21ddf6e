/* A library of the guard's file name that is not the guard (a decoy found through
 * LD_LIBRARY_PATH). */
int toctou_guard_decoy(void) { return 0; }
