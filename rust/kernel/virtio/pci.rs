// SPDX-License-Identifier: GPL-2.0

//! Virtio-pci transport extension.
