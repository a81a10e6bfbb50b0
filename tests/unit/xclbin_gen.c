/* xclbin_gen.c — see xclbin_gen.h.  Field meanings from XRT's public
 * xclbin.h; the metadata XML follows the layout Vitis writes. */
#include "xclbin_gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xclbin.h>

#define N_SECTIONS 4

/* Arguments in accel_desc.h order; ports = its AXI bundles. */
static const char xml[] =
"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
"<project name=\"detd_accel\">\n"
" <platform vendor=\"xilinx\" boardid=\"kv260\" name=\"detd-test\" featureRomTime=\"0\">\n"
"  <version major=\"1\" minor=\"0\"/>\n"
"  <description/>\n"
"  <board name=\"detd-test\" vendor=\"xilinx\" fpgaDevice=\"zynquplus\"/>\n"
"  <build_metadata/>\n"
"  <device name=\"fpga0\" fpgaDevice=\"zynquplus\" addrWidth=\"0\">\n"
"   <systemClocks/>\n"
"   <core name=\"OCL_REGION_0\" target=\"bitstream\" type=\"clc_region\" clockFreq=\"0\" numComputeUnits=\"1\">\n"
"    <kernel name=\"detd_accel\" language=\"c\" vlnv=\"xilinx.com:hls:detd_accel:1.0\" preferredWorkGroupSizeMultiple=\"0\" workGroupSize=\"1\" interrupt=\"true\" hwControlProtocol=\"ap_ctrl_hs\">\n"
"     <module name=\"detd_accel\"/>\n"
"     <port name=\"M_AXI_GMEM0\" mode=\"master\" range=\"0xFFFFFFFF\" dataWidth=\"128\" portType=\"addressable\" base=\"0x0\"/>\n"
"     <port name=\"M_AXI_GMEM1\" mode=\"master\" range=\"0xFFFFFFFF\" dataWidth=\"128\" portType=\"addressable\" base=\"0x0\"/>\n"
"     <port name=\"M_AXI_GMEM2\" mode=\"master\" range=\"0xFFFFFFFF\" dataWidth=\"128\" portType=\"addressable\" base=\"0x0\"/>\n"
"     <port name=\"M_AXI_GMEM3\" mode=\"master\" range=\"0xFFFFFFFF\" dataWidth=\"128\" portType=\"addressable\" base=\"0x0\"/>\n"
"     <port name=\"S_AXI_CONTROL\" mode=\"slave\" range=\"0x1000\" dataWidth=\"32\" portType=\"addressable\" base=\"0x0\"/>\n"
"     <arg name=\"desc\" addressQualifier=\"1\" id=\"0\" port=\"M_AXI_GMEM0\" size=\"0x8\" offset=\"0x10\" hostOffset=\"0x0\" hostSize=\"0x8\" type=\"void*\"/>\n"
"     <arg name=\"n_desc\" addressQualifier=\"0\" id=\"1\" port=\"S_AXI_CONTROL\" size=\"0x4\" offset=\"0x1C\" hostOffset=\"0x0\" hostSize=\"0x4\" type=\"unsigned int\"/>\n"
"     <arg name=\"params\" addressQualifier=\"1\" id=\"2\" port=\"M_AXI_GMEM0\" size=\"0x8\" offset=\"0x24\" hostOffset=\"0x0\" hostSize=\"0x8\" type=\"void*\"/>\n"
"     <arg name=\"in\" addressQualifier=\"1\" id=\"3\" port=\"M_AXI_GMEM1\" size=\"0x8\" offset=\"0x30\" hostOffset=\"0x0\" hostSize=\"0x8\" type=\"void*\"/>\n"
"     <arg name=\"aux\" addressQualifier=\"1\" id=\"4\" port=\"M_AXI_GMEM3\" size=\"0x8\" offset=\"0x3C\" hostOffset=\"0x0\" hostSize=\"0x8\" type=\"void*\"/>\n"
"     <arg name=\"out\" addressQualifier=\"1\" id=\"5\" port=\"M_AXI_GMEM2\" size=\"0x8\" offset=\"0x48\" hostOffset=\"0x0\" hostSize=\"0x8\" type=\"void*\"/>\n"
"     <instance name=\"detd_accel_1\">\n"
"      <addrRemap base=\"0xA0000000\" range=\"0x10000\" port=\"S_AXI_CONTROL\"/>\n"
"     </instance>\n"
"    </kernel>\n"
"   </core>\n"
"  </device>\n"
" </platform>\n"
"</project>\n";

int xclbin_gen_write(const char *path, const uint8_t uuid[16])
{
	size_t hdr = sizeof(struct axlf) + (N_SECTIONS - 1) * sizeof(struct axlf_section_header);
	size_t mt_sz = sizeof(struct mem_topology) + 3 * sizeof(struct mem_data);
	size_t ip_sz = sizeof(struct ip_layout);
	size_t cn_sz = sizeof(struct connectivity) + 4 * sizeof(struct connection);
	struct mem_topology *mt = calloc(1, mt_sz);
	struct ip_layout *ip = calloc(1, ip_sz);
	struct connectivity *cn = calloc(1, cn_sz);
	unsigned char *buf = NULL;
	int rc = -ENOMEM;
	if (!mt || !ip || !cn)
		goto out;
	/* one bank per bundle: gmem0..3 */
	mt->m_count = 4;
	for (int i = 0; i < 4; i++) {
		mt->m_mem_data[i].m_type = MEM_DDR4;
		mt->m_mem_data[i].m_used = 1;
		mt->m_mem_data[i].m_size = 1 << 20; /* KiB */
		mt->m_mem_data[i].m_base_address = (uint64_t)i << 32;
		snprintf((char *)mt->m_mem_data[i].m_tag, sizeof(mt->m_mem_data[i].m_tag), "bank%d",
			 i);
	}
	ip->m_count = 1;
	ip->m_ip_data[0].m_type = IP_KERNEL;
	ip->m_ip_data[0].properties = AP_CTRL_HS << 8;
	ip->m_ip_data[0].m_base_address = 0xA0000000;
	snprintf((char *)ip->m_ip_data[0].m_name, sizeof(ip->m_ip_data[0].m_name),
		 "detd_accel:detd_accel_1");
	/* argument → bank: desc, params gmem0; in gmem1; aux gmem3; out gmem2 */
	static const int arg_bank[5][2] = {{0, 0}, {2, 0}, {3, 1}, {4, 3}, {5, 2}};
	cn->m_count = 5;
	for (int i = 0; i < 5; i++) {
		cn->m_connection[i].arg_index = arg_bank[i][0];
		cn->m_connection[i].m_ip_layout_index = 0;
		cn->m_connection[i].mem_data_index = arg_bank[i][1];
	}
	const void *data[N_SECTIONS] = {mt, ip, cn, xml};
	size_t size[N_SECTIONS] = {mt_sz, ip_sz, cn_sz, sizeof(xml) - 1};
	uint32_t kind[N_SECTIONS] = {MEM_TOPOLOGY, IP_LAYOUT, CONNECTIVITY, EMBEDDED_METADATA};
	size_t total = hdr;
	for (int i = 0; i < N_SECTIONS; i++)
		total = ((total + 7) & ~(size_t)7) + size[i];
	if (!(buf = calloc(1, total)))
		goto out;
	struct axlf *a = (struct axlf *)buf;
	memcpy(a->m_magic, "xclbin2", 8);
	a->m_signature_length = -1;
	memset(a->reserved, 0xff, sizeof(a->reserved));
	a->m_header.m_length = total;
	a->m_header.m_versionMajor = 2;
	a->m_header.m_versionMinor = 13;
	snprintf((char *)a->m_header.m_platformVBNV, sizeof(a->m_header.m_platformVBNV),
		 "xilinx:detd-test:noop:1.0");
	memcpy(a->m_header.uuid, uuid, 16);
	a->m_header.m_numSections = N_SECTIONS;
	size_t off = hdr;
	for (int i = 0; i < N_SECTIONS; i++) {
		off = (off + 7) & ~(size_t)7;
		a->m_sections[i].m_sectionKind = kind[i];
		snprintf(a->m_sections[i].m_sectionName, sizeof(a->m_sections[i].m_sectionName),
			 "detd%d", i);
		a->m_sections[i].m_sectionOffset = off;
		a->m_sections[i].m_sectionSize = size[i];
		memcpy(buf + off, data[i], size[i]);
		off += size[i];
	}
	FILE *f = fopen(path, "wb");
	if (!f) {
		rc = -errno;
		goto out;
	}
	rc = fwrite(buf, 1, total, f) == total ? 0 : -EIO;
	if (fclose(f) && !rc)
		rc = -EIO;
out:
	free(mt);
	free(ip);
	free(cn);
	free(buf);
	return rc;
}
