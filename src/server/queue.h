// queue.h - inference workers behind a bounded queue.
//
// N worker threads, each with its own state (a detector session) made by worker_init in
// that thread, take jobs from a FIFO of at most `capacity` waiting jobs. Admission is
// two-step so the caller can commit before the job becomes visible to a worker:
// fr_queue_reserve takes a slot or says FULL/CLOSED at once (the server answers 503),
// fr_queue_submit hands the job over and never fails. fr_queue_close refuses new jobs and
// hands every waiting job to `drop` (the server answers them 503); running jobs finish.
// Ownership: jobs are opaque to the queue; run/drop receive them and own them from then on.
// All functions are thread-safe.
#ifndef FR_SERVER_QUEUE_H
#define FR_SERVER_QUEUE_H

#include "core/status.h"

typedef struct fr_queue fr_queue;

typedef struct {
    void *user; // passed to every callback
    // Called once in each worker thread before it takes jobs; may be NULL.
    fr_status (*worker_init)(void *user, int index, void **state, fr_err *err);
    // Called in the worker thread when it exits; may be NULL.
    void (*worker_free)(void *user, void *state);
    // Runs one job in a worker thread.
    void (*run)(void *user, void *state, void *job);
    // A job that will never run (closed queue), called in the closing/submitting thread.
    void (*drop)(void *user, void *job);
} fr_queue_fns;

typedef enum { FR_QUEUE_OK, FR_QUEUE_FULL, FR_QUEUE_CLOSED } fr_queue_admit;

// Starts `workers` threads (1..256) with room for `capacity` waiting jobs (1..65536).
// Returns after every worker_init has finished; if one failed, the others are stopped and
// its error is returned. stack_bytes: worker stack size (0: the system default).
fr_status fr_queue_new(fr_queue **out, int workers, int capacity, size_t stack_bytes,
                       const fr_queue_fns *fns, fr_err *err);
// Takes one waiting slot: FR_QUEUE_FULL when capacity slots are taken, FR_QUEUE_CLOSED after
// fr_queue_close. A reserved slot must be used by exactly one fr_queue_submit.
fr_queue_admit fr_queue_reserve(fr_queue *q);
// Queues a job into a reserved slot (or drops it if the queue closed since).
void fr_queue_submit(fr_queue *q, void *job);
// Jobs waiting (reserved included) and jobs running now.
void fr_queue_stats(fr_queue *q, int *waiting, int *running);
// Refuses new jobs and drops the waiting ones. Idempotent.
void fr_queue_close(fr_queue *q);
// Closes, waits for running jobs and joins the workers, frees q. NULL is a no-op.
void fr_queue_free(fr_queue *q);

#endif
