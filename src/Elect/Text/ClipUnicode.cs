using System.Globalization;
using System.Text;

namespace Elect.Text;

/// <summary>
/// Unicode helpers for the CLIP text normaliser that .NET cannot provide here: the solution builds
/// with <c>InvariantGlobalization</c>, under which <see cref="string.Normalize()"/> is a no-op (no ICU),
/// so NFC composition is implemented from the generated tables in <see cref="ClipUnicodeData"/>;
/// and lower-casing follows the full Unicode mapping (as Python's <c>str.lower</c> and Rust's
/// <c>to_lowercase</c> do) where .NET's simple mapping differs: U+0130 and word-final sigma.
/// </summary>
internal static class ClipUnicode
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Lazy<Tables> TablesLazy = new(BuildTables);

    private sealed class Tables
    {
        public readonly Dictionary<int, int[]> FullDecomposition = new();
        public readonly Dictionary<int, byte> CombiningClass = new();
        public readonly Dictionary<long, int> Composition = new();
    }

    private static Tables BuildTables()
    {
        var t = new Tables();
        var single = new Dictionary<int, int[]>();
        foreach (var entry in ClipUnicodeData.Decompositions.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            int sep = entry.IndexOfAny(['=', '!']);
            int cp = int.Parse(entry.AsSpan(0, sep), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var parts = entry[(sep + 1)..].Split(' ').Select(p => int.Parse(p, NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
            single[cp] = parts;
            if (entry[sep] == '=' && parts.Length == 2)
                t.Composition[Key(parts[0], parts[1])] = cp;
        }
        foreach (var cp in single.Keys)
        {
            var full = new List<int>();
            Expand(cp, single, full);
            t.FullDecomposition[cp] = full.ToArray();
        }
        foreach (var entry in ClipUnicodeData.CombiningClasses.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            int colon = entry.IndexOf(':');
            var range = entry[..colon];
            byte ccc = byte.Parse(entry.AsSpan(colon + 1), CultureInfo.InvariantCulture);
            int dash = range.IndexOf('-');
            int first = int.Parse(dash < 0 ? range : range[..dash], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            int last = dash < 0 ? first : int.Parse(range[(dash + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            for (int cp = first; cp <= last; cp++) t.CombiningClass[cp] = ccc;
        }
        return t;
    }

    private static void Expand(int cp, Dictionary<int, int[]> single, List<int> into)
    {
        if (single.TryGetValue(cp, out var parts))
            foreach (var p in parts) Expand(p, single, into);
        else
            into.Add(cp);
    }

    private static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    /// <summary>Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical composition).</summary>
    public static string Nfc(string text)
    {
        // Nothing below U+0300 decomposes into, or composes with, anything that is not itself >= U+0300.
        bool simple = true;
        foreach (var c in text)
            if (c >= '\u0300') { simple = false; break; }
        if (simple) return text;

        var t = TablesLazy.Value;
        // 1. full canonical decomposition
        var cps = new List<int>(text.Length + 8);
        foreach (var rune in text.EnumerateRunes())
        {
            int cp = rune.Value;
            int s = cp - SBase;
            if (s >= 0 && s < SCount)
            {
                cps.Add(LBase + s / NCount);
                cps.Add(VBase + s % NCount / TCount);
                if (s % TCount != 0) cps.Add(TBase + s % TCount);
            }
            else if (t.FullDecomposition.TryGetValue(cp, out var d)) cps.AddRange(d);
            else cps.Add(cp);
        }
        // 2. canonical ordering: stable sort of each run of non-starters by combining class
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = Ccc(t, cps[i]);
            if (cc == 0) continue;
            for (int j = i; j > 0; j--)
            {
                int prev = Ccc(t, cps[j - 1]);
                if (prev <= cc) break;
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
            }
        }
        // 3. canonical composition
        var output = new List<int>(cps.Count);
        int starter = -1, lastCc = 0;
        foreach (int cp in cps)
        {
            int cc = Ccc(t, cp);
            if (starter >= 0)
            {
                bool adjacent = output.Count - 1 == starter;
                if (adjacent || (lastCc != 0 && lastCc < cc))
                {
                    int composed = Compose(t, output[starter], cp);
                    if (composed >= 0) { output[starter] = composed; continue; }
                }
            }
            if (cc == 0) starter = output.Count;
            lastCc = cc;
            output.Add(cp);
        }
        var sb = new StringBuilder(output.Count + 4);
        foreach (int cp in output) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    private static int Ccc(Tables t, int cp) => t.CombiningClass.TryGetValue(cp, out var c) ? c : 0;

    private static int Compose(Tables t, int a, int b)
    {
        int l = a - LBase, v = b - VBase;
        if (l >= 0 && l < LCount && v >= 0 && v < VCount) return SBase + (l * VCount + v) * TCount;
        int s = a - SBase, tt = b - TBase;
        if (s >= 0 && s < SCount && s % TCount == 0 && tt > 0 && tt < TCount) return a + tt;
        return t.Composition.TryGetValue(Key(a, b), out var c) ? c : -1;
    }

    /// <summary>
    /// Lower-casing code point by code point with the full Unicode mapping, as Rust's <c>char::to_lowercase</c>
    /// (the <c>tokenizers</c> Lowercase normaliser) does: .NET's invariant simple mapping, plus U+0130 -> "i\u0307",
    /// the one code point whose full mapping is longer. No context rules: capital sigma is always U+03C3.
    /// </summary>
    public static string Lower(string text)
    {
        var lower = text.ToLowerInvariant(); // a 1:1 UTF-16 mapping
        if (text.IndexOf('\u0130') < 0) return lower;
        var sb = new StringBuilder(text.Length + 4);
        for (int i = 0; i < text.Length; i++)
            if (text[i] == '\u0130') sb.Append("i\u0307"); else sb.Append(lower[i]);
        return sb.ToString();
    }
}
