// queue.c - bounded FIFO and worker threads (see queue.h). One mutex, two condition
// variables: `work` wakes workers, `init` tells fr_queue_new that workers started.
#include "queue.h"

#include "core/alloc.h"

#include <pthread.h>
#include <string.h>

typedef struct {
    fr_queue *q;
    int index;
    pthread_t tid;
    int started; // pthread_create succeeded
} worker;

struct fr_queue {
    pthread_mutex_t mu;
    pthread_cond_t work, init;
    fr_queue_fns fns;
    void **ring; // capacity slots
    int capacity, head, count, reserved, running;
    int closed;
    int n_workers;
    worker *workers;
    int init_done, init_failed;
    fr_err init_err;
};

static void *worker_main(void *arg) {
    worker *w = arg;
    fr_queue *q = w->q;
    void *state = NULL;
    fr_err err = {0};
    fr_status s = q->fns.worker_init ? q->fns.worker_init(q->fns.user, w->index, &state, &err)
                                     : FR_OK;
    pthread_mutex_lock(&q->mu);
    if (s && !q->init_failed) {
        q->init_failed = 1;
        q->init_err = err;
        q->init_err.status = s;
    }
    q->init_done++;
    pthread_cond_broadcast(&q->init);
    pthread_mutex_unlock(&q->mu);
    if (s) return NULL;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->count && !q->closed) pthread_cond_wait(&q->work, &q->mu);
        if (!q->count) { // closed and empty
            pthread_mutex_unlock(&q->mu);
            break;
        }
        void *job = q->ring[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        q->running++;
        pthread_mutex_unlock(&q->mu);
        q->fns.run(q->fns.user, state, job);
        pthread_mutex_lock(&q->mu);
        q->running--;
        pthread_mutex_unlock(&q->mu);
    }
    if (q->fns.worker_free) q->fns.worker_free(q->fns.user, state);
    return NULL;
}

static void queue_destroy(fr_queue *q) {
    for (int i = 0; i < q->n_workers; i++)
        if (q->workers[i].started) pthread_join(q->workers[i].tid, NULL);
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->init);
    pthread_mutex_destroy(&q->mu);
    fr_free(q->workers);
    fr_free(q->ring);
    fr_free(q);
}

fr_status fr_queue_new(fr_queue **out, int workers, int capacity, size_t stack_bytes,
                       const fr_queue_fns *fns, fr_err *err) {
    *out = NULL;
    if (workers < 1 || workers > 256)
        return fr_fail(err, FR_ERR_INVALID, "workers must be in [1, 256], got %d", workers);
    if (capacity < 1 || capacity > 65536)
        return fr_fail(err, FR_ERR_INVALID, "queue capacity must be in [1, 65536], got %d",
                       capacity);
    if (!fns || !fns->run || !fns->drop)
        return fr_fail(err, FR_ERR_INTERNAL, "queue: run and drop callbacks are required");
    fr_queue *q = fr_calloc(1, sizeof *q);
    if (!q) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    q->ring = fr_calloc((size_t)capacity, sizeof *q->ring);
    q->workers = fr_calloc((size_t)workers, sizeof *q->workers);
    if (!q->ring || !q->workers) {
        fr_free(q->ring);
        fr_free(q->workers);
        fr_free(q);
        return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    }
    q->fns = *fns;
    q->capacity = capacity;
    q->n_workers = workers;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work, NULL);
    pthread_cond_init(&q->init, NULL);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack_bytes) pthread_attr_setstacksize(&attr, stack_bytes);
    int started = 0;
    fr_status s = FR_OK;
    for (int i = 0; i < workers; i++) {
        q->workers[i].q = q;
        q->workers[i].index = i;
        if (pthread_create(&q->workers[i].tid, &attr, worker_main, &q->workers[i]) != 0) {
            s = fr_fail(err, FR_ERR_NOMEM, "cannot start worker thread %d", i);
            break;
        }
        q->workers[i].started = 1;
        started++;
    }
    pthread_attr_destroy(&attr);
    pthread_mutex_lock(&q->mu);
    while (q->init_done < started) pthread_cond_wait(&q->init, &q->mu);
    if (!s && q->init_failed) {
        s = q->init_err.status;
        if (err) *err = q->init_err;
    }
    if (s) {
        q->closed = 1;
        pthread_cond_broadcast(&q->work);
    }
    pthread_mutex_unlock(&q->mu);
    if (s) {
        queue_destroy(q);
        return s;
    }
    *out = q;
    return FR_OK;
}

fr_queue_admit fr_queue_reserve(fr_queue *q) {
    pthread_mutex_lock(&q->mu);
    fr_queue_admit a = FR_QUEUE_OK;
    if (q->closed) a = FR_QUEUE_CLOSED;
    else if (q->count + q->reserved >= q->capacity) a = FR_QUEUE_FULL;
    else q->reserved++;
    pthread_mutex_unlock(&q->mu);
    return a;
}

void fr_queue_submit(fr_queue *q, void *job) {
    pthread_mutex_lock(&q->mu);
    FR_ASSERT(q->reserved > 0);
    q->reserved--;
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        q->fns.drop(q->fns.user, job);
        return;
    }
    q->ring[(q->head + q->count) % q->capacity] = job;
    q->count++;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
}

void fr_queue_stats(fr_queue *q, int *waiting, int *running) {
    pthread_mutex_lock(&q->mu);
    if (waiting) *waiting = q->count + q->reserved;
    if (running) *running = q->running;
    pthread_mutex_unlock(&q->mu);
}

void fr_queue_close(fr_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->work);
    while (q->count) {
        void *job = q->ring[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        pthread_mutex_unlock(&q->mu);
        q->fns.drop(q->fns.user, job);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
}

void fr_queue_free(fr_queue *q) {
    if (!q) return;
    fr_queue_close(q);
    queue_destroy(q);
}
