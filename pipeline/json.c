/*
 * json.c — a stream's stats as JSON for /status and /streams (json-c).
 * Pure function of a snapshot: any thread.
 */
#include <json-c/json.h>

#include "pipeline.h"

struct json_object *pipe_stats_to_json(const struct pipe_stream_stats *st)
{
	struct json_object *o = json_object_new_object();
	struct json_object *drops = json_object_new_object();
	if (!o || !drops) {
		json_object_put(o);
		json_object_put(drops);
		return NULL;
	}
	json_object_object_add(o, "id", json_object_new_string(st->id));
	json_object_object_add(o, "state", json_object_new_string(pipe_state_name(st->state)));
	json_object_object_add(o, "live_source", json_object_new_boolean(st->is_live));
	json_object_object_add(o, "generation", json_object_new_int64(st->stream_gen));
	json_object_object_add(o, "frames_decoded", json_object_new_uint64(st->frames_decoded));
	json_object_object_add(o, "frames_delivered",
			       json_object_new_uint64(st->frames_delivered));
	uint64_t total = 0;
	for (int r = 0; r < PIPE_DROP__COUNT; r++) {
		json_object_object_add(drops, pipe_drop_reason_name((enum pipe_drop_reason)r),
				       json_object_new_uint64(st->dropped[r]));
		total += st->dropped[r];
	}
	json_object_object_add(o, "frames_dropped", json_object_new_uint64(total));
	json_object_object_add(o, "dropped", drops);
	json_object_object_add(o, "fps", json_object_new_double(st->fps));
	json_object_object_add(o, "last_frame_age_ms",
			       st->last_frame_age_ms < 0 ? NULL :
							   json_object_new_int64(st->last_frame_age_ms));
	json_object_object_add(o, "reconnects", json_object_new_uint64(st->reconnects));
	json_object_object_add(o, "source_width", json_object_new_int(st->orig_width));
	json_object_object_add(o, "source_height", json_object_new_int(st->orig_height));
	json_object_object_add(o, "backoff_s", json_object_new_double(st->backoff_s));
	if (st->last_error[0]) {
		struct json_object *e = json_object_new_object();
		json_object_object_add(e, "message", json_object_new_string(st->last_error));
		json_object_object_add(e, "time_unix_ms",
				       json_object_new_int64(st->last_error_wall_ns / 1000000));
		json_object_object_add(o, "last_error", e);
	} else {
		json_object_object_add(o, "last_error", NULL);
	}
	return o;
}
