// CRC-32C (Castagnoli): the checksum of shard records and indexes
// (docs/shard-format.md) and of cache entries (docs/cache-format.md).
#pragma once

#include <cstdint>
#include <span>

namespace stoker {

// CRC-32C (reflected polynomial 0x82F63B78, initial value and final XOR
// 0xFFFFFFFF; "123456789" -> 0xE3069283; the checksum of iSCSI, ext4 and
// S3's x-amz-checksum-crc32c) of any number of bytes. With `prefix_crc`
// the CRC of some bytes A, returns the CRC of A followed by `bytes`.
uint32_t Crc32c(std::span<const uint8_t> bytes, uint32_t prefix_crc = 0);

}  // namespace stoker
