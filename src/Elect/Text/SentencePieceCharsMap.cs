using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Elect.Text;

/// <summary>
/// SentencePiece's <c>precompiled_charsmap</c> normaliser (e.g. <c>nmt_nfkc</c>): a Darts double-array
/// trie over UTF-8 byte strings whose values index NUL-terminated replacement strings.
/// Layout: <c>u32 trie_size_in_bytes</c>, <c>trie_size/4</c> little-endian u32 units, then the replacement blob.
/// </summary>
/// <remarks>
/// Applied the way the HuggingFace <c>tokenizers</c> <c>Precompiled</c> normaliser (behind transformers'
/// fast T5 tokenizer) applies it: per extended grapheme cluster; a cluster shorter than 6 UTF-8 bytes
/// is replaced as a whole when the trie has an entry for a prefix of it (the first, i.e. shortest,
/// entry found), otherwise each code point is looked up on its own and kept when it has no entry.
/// </remarks>
internal sealed class SentencePieceCharsMap
{
    private readonly uint[] _units;
    private readonly byte[] _normalized;

    private SentencePieceCharsMap(uint[] units, byte[] normalized)
    {
        _units = units;
        _normalized = normalized;
    }

    public static SentencePieceCharsMap Parse(byte[] blob)
    {
        if (blob.Length < 4) throw new InvalidDataException("precompiled_charsmap is truncated");
        uint trieBytes = BinaryPrimitives.ReadUInt32LittleEndian(blob);
        if (trieBytes % 4 != 0 || trieBytes > blob.Length - 4 || trieBytes == 0)
            throw new InvalidDataException($"precompiled_charsmap: bad trie size {trieBytes} for a {blob.Length}-byte blob");
        var units = new uint[trieBytes / 4];
        for (int i = 0; i < units.Length; i++) units[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob.AsSpan(4 + 4 * i));
        return new SentencePieceCharsMap(units, blob.AsSpan(4 + (int)trieBytes).ToArray());
    }

    /// <summary>The value of the shortest key in the trie that is a prefix of <paramref name="key"/>, or -1.</summary>
    private int FirstPrefixValue(ReadOnlySpan<byte> key)
    {
        uint node = 0;
        uint unit = _units[0];
        node ^= Offset(unit);
        foreach (byte c in key)
        {
            if (c == 0) break;
            node ^= c;
            if (node >= _units.Length) return -1;
            unit = _units[node];
            if ((unit & 0x800000FFu) != c) return -1; // label
            node ^= Offset(unit);
            if (((unit >> 8) & 1) != 0) // has leaf
                return node < _units.Length ? (int)(_units[node] & 0x7FFFFFFFu) : -1;
        }
        return -1;
    }

    private static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);

    private string? Transform(ReadOnlySpan<byte> utf8)
    {
        int index = FirstPrefixValue(utf8);
        if (index < 0 || index > _normalized.Length) return null;
        int end = Array.IndexOf(_normalized, (byte)0, index);
        if (end < 0) end = _normalized.Length;
        return Encoding.UTF8.GetString(_normalized, index, end - index);
    }

    public string Normalize(string text)
    {
        if (text.Length == 0) return text;
        var sb = new StringBuilder(text.Length + 8);
        Span<byte> buf = stackalloc byte[8];
        int pos = 0;
        while (pos < text.Length)
        {
            int len = StringInfo.GetNextTextElementLength(text, pos);
            if (len <= 0) len = 1;
            var grapheme = text.AsSpan(pos, len);
            pos += len;
            int byteCount = Encoding.UTF8.GetByteCount(grapheme);
            if (byteCount < 6)
            {
                Span<byte> bytes = buf[..byteCount];
                Encoding.UTF8.GetBytes(grapheme, bytes);
                if (Transform(bytes) is { } whole) { sb.Append(whole); continue; }
            }
            int i = 0;
            while (i < grapheme.Length)
            {
                int cl = char.IsHighSurrogate(grapheme[i]) && i + 1 < grapheme.Length && char.IsLowSurrogate(grapheme[i + 1]) ? 2 : 1;
                var part = grapheme.Slice(i, cl);
                i += cl;
                int n = Encoding.UTF8.GetBytes(part, buf);
                if (Transform(buf[..n]) is { } norm) sb.Append(norm);
                else sb.Append(part);
            }
        }
        return sb.ToString();
    }
}
