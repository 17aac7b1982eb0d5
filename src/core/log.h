// log.h - leveled logging to stderr, or to a callback the embedding program sets.
#ifndef FR_LOG_H
#define FR_LOG_H

typedef enum { FR_LOG_DEBUG, FR_LOG_INFO, FR_LOG_WARN, FR_LOG_ERROR } fr_log_level;

typedef void (*fr_log_fn)(fr_log_level level, const char *msg, void *user);

void fr_log_set(fr_log_fn fn, void *user); // NULL restores stderr
void fr_log_set_level(fr_log_level min);   // messages below min are dropped
void fr_log(fr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
