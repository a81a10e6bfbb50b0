/*
 * handoff.h — happens-before edges that ThreadSanitizer cannot see by itself.
 *
 * detd hands objects between threads through GLib and GStreamer:
 * g_main_context_invoke() to the pipeline thread, and a pipeline's state
 * change to the streaming threads GStreamer takes from its thread pool.
 * Those hand-offs are properly synchronised, but by GLib 2.74's own
 * futex-based GMutex, which TSan does not model, so every later access of the
 * receiving thread looks like a race with the sender's initialisation.
 *
 * DET_HANDOFF_RELEASE(p) goes right before the call that hands p over,
 * DET_HANDOFF_ACQUIRE(p) at the top of the callback that receives it.  They
 * state the edge GLib really provides; they do not hide races between two
 * detd threads that both keep using p (those must take a lock).  Without TSan
 * both are no-ops.
 */
#ifndef DETD_HANDOFF_H
#define DETD_HANDOFF_H

#if defined(__SANITIZE_THREAD__)
#define DET_HAVE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DET_HAVE_TSAN 1
#endif
#endif

#ifdef DET_HAVE_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define DET_HANDOFF_RELEASE(p) __tsan_release((void *)(p))
#define DET_HANDOFF_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define DET_HANDOFF_RELEASE(p) ((void)(p))
#define DET_HANDOFF_ACQUIRE(p) ((void)(p))
#endif

#endif
