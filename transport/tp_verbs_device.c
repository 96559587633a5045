/* verbs provider: choosing the device, port, GID and address (see tp_verbs.c). */
#include <config.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_verbs_priv.h"

static int gid_ipv4(const union ibv_gid *g, uint32_t *ip)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (memcmp(g->raw, prefix, sizeof(prefix)))
		return 0;
	memcpy(ip, g->raw + 12, 4);
	return 1;
}

/* The IPv4 address of an IPoIB netdev of this device (InfiniBand). */
static int ib_netdev_ipv4(const char *dev, uint32_t *ip)
{
	char path[256];
	struct ifaddrs *ifa, *i;
	struct dirent *de;
	DIR *d;
	int found = 0;

	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/net", dev);
	d = opendir(path);
	if (!d || getifaddrs(&ifa)) {
		if (d)
			closedir(d);
		return 0;
	}
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		for (i = ifa; i && !found; i = i->ifa_next)
			if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !strcmp(i->ifa_name, de->d_name)) {
				*ip = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
				found = 1;
			}
	}
	freeifaddrs(ifa);
	closedir(d);
	return found;
}

/* Long: one walk over devices, ports and GIDs to the first usable one, and a message naming all it saw; moved byte for byte, untested outside the soft-RoCE bed. */
int verbs_choose_endpoint(struct hetsgd_tp *tp, struct verbs_state *st)
{
	const char *want = tp->attr.verbs.device ? tp->attr.verbs.device : getenv("HETSGD_IB_DEV");
	const char *addr = tp->attr.verbs.addr ? tp->attr.verbs.addr : getenv("HETSGD_IB_ADDR");
	int gid_index = tp->attr.verbs.gid_index, ndev = 0, i, ret;
	char names[256] = "";
	struct ibv_device **devs;
	uint32_t ip = 0;

	if (gid_index < 0) {
		long v = -1;

		ret = hetsgd_env_long("HETSGD_GID_INDEX", 0, 65535, &v);
		if (ret < 0)
			return ret;
		gid_index = (int)v;
	}
	if (addr && inet_pton(AF_INET, addr, &ip) != 1)
		return hetsgd_err(-EINVAL, "HETSGD_IB_ADDR/addr '%s' is not an IPv4 address", addr);

	devs = ibv_get_device_list(&ndev);
	if (!devs || ndev == 0) {
		if (devs)
			ibv_free_device_list(devs);
		return hetsgd_err(-ENODEV,
				  "no RDMA device found: load the NIC's driver, or create a soft-RoCE device "
				  "(modprobe rdma_rxe; rdma link add rxe0 type rxe netdev eth0), or use the shm provider");
	}
	ret = -ENODEV;
	for (i = 0; i < ndev && ret; i++) {
		const char *name = ibv_get_device_name(devs[i]);
		struct ibv_device_attr dattr;
		struct ibv_context *ctx;
		uint8_t p;

		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "", name);
		if (want && strcmp(want, name))
			continue;
		ctx = ibv_open_device(devs[i]);
		if (!ctx || ibv_query_device(ctx, &dattr)) {
			if (ctx)
				ibv_close_device(ctx);
			continue;
		}
		for (p = 1; p <= dattr.phys_port_cnt && ret; p++) {
			struct ibv_port_attr pattr;
			int g, gi = -1;

			if (ibv_query_port(ctx, p, &pattr) || pattr.state != IBV_PORT_ACTIVE)
				continue;
			st->link_ethernet = pattr.link_layer == IBV_LINK_LAYER_ETHERNET;
			st->active_mtu = pattr.active_mtu;
			if (st->link_ethernet) {
				/* RoCE: a v2 GID with our IPv4 address in it. */
				for (g = 0; g < pattr.gid_tbl_len; g++) {
					struct ibv_gid_entry ent;
					uint32_t gip;

					if (gid_index >= 0 && g != gid_index)
						continue;
					if (ibv_query_gid_ex(ctx, p, (uint32_t)g, &ent, 0))
						continue;
					if (ent.gid_type != IBV_GID_TYPE_ROCE_V2 || !gid_ipv4(&ent.gid, &gip))
						continue;
					if (addr && gip != ip)
						continue;
					gi = g;
					if (!addr)
						ip = gip;
					break;
				}
				if (gi < 0)
					continue;
			} else if (!addr && !ib_netdev_ipv4(name, &ip)) {
				continue;
			}
			st->port = p;
			st->gid_index = st->link_ethernet ? gi : -1;
			snprintf(st->dev, sizeof(st->dev), "%s", name);
			ret = 0;
		}
		ibv_close_device(ctx);
	}
	ibv_free_device_list(devs);
	if (ret) {
		if (want && !strstr(names, want))
			return hetsgd_err(-ENODEV, "RDMA device '%s' not found; this host has: %s", want, names);
		return hetsgd_err(-ENODEV,
				  "no usable RDMA port on %s (have: %s): need an ACTIVE port with %s%s%s; "
				  "check ibv_devinfo, or set HETSGD_IB_DEV, HETSGD_GID_INDEX or HETSGD_IB_ADDR",
				  want ? want : "any device", names,
				  gid_index >= 0 ? "the requested GID index as RoCE v2 IPv4" :
				  "a RoCE v2 IPv4-mapped GID (RoCE) or an IPoIB address (InfiniBand)",
				  addr ? " matching address " : "", addr ? addr : "");
	}
	st->addr.sin_family = AF_INET;
	st->addr.sin_addr.s_addr = ip;
	return 0;
}
