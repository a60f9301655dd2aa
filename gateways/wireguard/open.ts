// Picks the WireGuard driver for this machine and opens the device. `auto` takes the kernel
// when its generic-netlink family answers, else wireguard-go; the choice and the reason are
// logged, and a machine with neither gets a clear reason (the caller runs without WireGuard
// and says so).
import type { Logger } from '../../core/log.ts';
import type { WireGuardDevice } from './device.ts';
import { NetlinkDevice, resolveKernelWireGuard } from './netlink-driver.ts';
import { UapiDevice, uapiUnavailable } from './uapi-driver.ts';

export type DriverChoice = 'auto' | 'netlink' | 'uapi';

export interface OpenedDevice {
  device: WireGuardDevice;
  why: string;
}

export class WireGuardUnavailable extends Error {}

export async function openDevice(o: { name: string; driver: DriverChoice; logger: Logger; onRestart?: () => Promise<void> }): Promise<OpenedDevice> {
  const kernel = o.driver === 'uapi' ? undefined : await resolveKernelWireGuard();
  if (kernel && 'familyId' in kernel) {
    return { device: await NetlinkDevice.open(o.name, kernel.familyId), why: o.driver === 'auto' ? 'the kernel has WireGuard (generic netlink family found)' : 'wireguard.driver is netlink' };
  }
  if (o.driver === 'netlink') throw new WireGuardUnavailable(`wireguard.driver is netlink, but ${kernel?.unavailable}`);
  const userspace = uapiUnavailable();
  if (userspace) throw new WireGuardUnavailable(o.driver === 'uapi' ? userspace : `${kernel?.unavailable}; and ${userspace}`);
  const device = await UapiDevice.open({ name: o.name, logger: o.logger, onRestart: o.onRestart });
  return { device, why: o.driver === 'uapi' ? 'wireguard.driver is uapi' : `${kernel?.unavailable}: using wireguard-go over its UAPI socket` };
}
