/* (stub: filled in by its own change) */
int main(void) { return 2; }
