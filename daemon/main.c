/* main.c — placeholder until the foundation lands. */
#include <stdio.h>

#include "detd-build.h"
#include "log.h"

int main(void)
{
	log_init();
	log_info("main", "detd %s", DETD_VERSION);
	return 0;
}
