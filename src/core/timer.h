// timer.h - monotonic wall-clock time in milliseconds (CLOCK_MONOTONIC).
#ifndef FR_TIMER_H
#define FR_TIMER_H

#include <time.h>

static inline double fr_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#endif
