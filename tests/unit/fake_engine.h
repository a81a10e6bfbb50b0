/*
 * fake_engine.h — a test double of the eng_* model/context/state functions,
 * linked only into test_batcher so the batcher can be tested alone.
 *
 * Model input: FAKE_W×FAKE_H×3.  eng_run() writes, for each frame, two
 * detections: d[0] with class_id = frames its state has seen since the last
 * reset (so tests see the state follow its stream), score 0.9, box
 * {0.1,0.2,0.5,0.6}; d[1] with score 0.01 (below any sensible min_score).
 * Each run appends the first input byte of every frame to a log.
 */
#ifndef FAKE_ENGINE_H
#define FAKE_ENGINE_H

#include <stdbool.h>

#define FAKE_W 8
#define FAKE_H 4
#define FAKE_LOG_MAX 4096

struct eng_model;
struct eng_model *fake_model(void);

/* While held, eng_run() blocks (after counting itself as started). */
void fake_gate_hold(bool hold);
/* Wait until at least n runs have started; false after ~5 s. */
bool fake_wait_runs_started(int n);
void fake_reset(void);
void fake_set_delay_ms(int ms);
/* Backend "dev": its context opens only while the device is present (off after reset). */
void fake_set_device(bool present);
/* Contexts of non-cpu backends created (successful or not) since the reset. */
int fake_open_tries(void);

/* Log of runs: batch sizes and the first byte of each frame, in run order. */
int fake_log(unsigned char *bytes, int max);
int fake_batches(int *sizes, int max);
#endif
