/*
 * mqtt.h — the MQTT sink as one daemon module ("mqtt"): detections, label
 * counts, stream states, stats and Home Assistant discovery published to a
 * broker (config section `mqtt`, topics in docs/PROTOCOL.md).
 *
 * It reads results from the bus like any subscriber, never from the
 * workers.  A broker that is absent, slow, restarting or refusing us is
 * not the daemon's failure: messages wait in a bounded queue (oldest
 * dropped and counted), one thread of this module talks to the broker and
 * reconnects with backoff, and the loop never waits on the network.
 *
 * Register it after the publishers (it needs their bus) and before the data
 * path (so it stops after the last results were flushed into the bus).
 *
 * Threads: the loop thread for everything here; the module's own "mqtt"
 * thread runs libmosquitto's network loop and only reports to the loop.
 */
#ifndef DETD_MQTT_H
#define DETD_MQTT_H

#include <stdbool.h>

struct daemon;
struct publish;
struct view;
struct mqtt;

/* true when detd was built with libmosquitto */
bool mqtt_available(void);

/* Register the module (after the view: snapshots come from it; view may be
 * NULL); *out is freed by mqtt_free() after daemon_run(). */
int mqtt_module_add(struct daemon *d, struct publish *pub, struct view *view, struct mqtt **out);
void mqtt_free(struct mqtt *m); /* NULL-safe */

#endif
