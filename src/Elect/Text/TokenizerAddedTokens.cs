using System.Text;
using System.Text.Json;

namespace Elect.Text;

/// <summary>
/// A token that the tokenizer splits out of the text before the model sees it (Hugging Face
/// <c>tokenizers</c>' <c>AddedToken</c>): the special tokens (bos/eos/unk/pad/..., additional_special_tokens)
/// and any other added tokens of the folder.
/// </summary>
/// <param name="Content">The literal text.</param>
/// <param name="Id">Its id.</param>
/// <param name="Special">A special token (affects decoding only; splitting is the same).</param>
/// <param name="Normalized">Matched in the normalised text (true) or in the raw text before normalisation (false).</param>
/// <param name="LStrip">The match swallows the whitespace on its left.</param>
/// <param name="RStrip">The match swallows the whitespace on its right.</param>
/// <param name="SingleWord">Only matched when not directly preceded or followed by a word character.</param>
public sealed record AddedToken(string Content, long Id, bool Special, bool Normalized, bool LStrip, bool RStrip, bool SingleWord);

/// <summary>
/// Splits added tokens out of a text exactly as <c>tokenizers</c>' <c>AddedVocabulary</c> does before
/// pre-tokenisation: first the non-normalised tokens are matched in the raw text; every remaining
/// piece is then normalised on its own and the normalised tokens (whose contents are normalised the
/// same way) are matched in it. Matching is leftmost-longest and non-overlapping (Aho-Corasick
/// <c>LeftmostLongest</c>); a <c>single_word</c> match touching a word character is dropped (the scan
/// still resumes after it); <c>lstrip</c> / <c>rstrip</c> widen a match over adjacent whitespace.
/// </summary>
internal sealed class AddedVocabulary
{
    private readonly Matcher _raw, _normalized;
    private readonly Func<string, string>? _normalize;

    public IReadOnlyList<AddedToken> Tokens { get; }

    public AddedVocabulary(IReadOnlyList<AddedToken> tokens, Func<string, string>? normalize)
    {
        Tokens = tokens;
        _normalize = normalize;
        _raw = new Matcher(tokens.Where(t => !t.Normalized || normalize is null).Select(t => (t.Content, t)));
        _normalized = new Matcher(tokens.Where(t => t.Normalized && normalize is not null).Select(t => (normalize!(t.Content), t)));
    }

    /// <summary>
    /// The text as a sequence of pieces: added tokens (<c>Token</c> set) and normalised free text
    /// (<c>Token</c> null, never empty) for the pre-tokeniser and model.
    /// </summary>
    public List<(string Text, AddedToken? Token)> Split(string text)
    {
        var result = new List<(string, AddedToken?)>();
        foreach (var (piece, token) in _raw.Split(text))
        {
            if (token is not null) { result.Add((piece, token)); continue; }
            var normalized = _normalize is null ? piece : _normalize(piece);
            foreach (var (p, t) in _normalized.Split(normalized))
                if (t is not null || p.Length > 0) result.Add((p, t));
        }
        return result;
    }

    private sealed class Matcher
    {
        // patterns by first UTF-16 unit, longest first
        private readonly Dictionary<char, (string Pattern, AddedToken Token)[]> _byFirst;

        public Matcher(IEnumerable<(string Pattern, AddedToken Token)> patterns)
        {
            var list = new List<(string, AddedToken)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (p, t) in patterns)
                if (p.Length > 0 && seen.Add(p)) list.Add((p, t)); // the first token with a content wins, as in tokenizers
            _byFirst = list.GroupBy(x => x.Item1[0])
                .ToDictionary(g => g.Key, g => g.OrderByDescending(x => x.Item1.Length).ToArray());
        }

        private (int Start, int End, AddedToken Token)? Next(string s, int from)
        {
            if (_byFirst.Count == 0) return null;
            for (int i = from; i < s.Length; i++)
            {
                if (!_byFirst.TryGetValue(s[i], out var candidates)) continue;
                foreach (var (p, t) in candidates)
                    if (i + p.Length <= s.Length && string.CompareOrdinal(s, i, p, 0, p.Length) == 0)
                        return (i, i + p.Length, t);
            }
            return null;
        }

        public List<(string Text, AddedToken? Token)> Split(string s)
        {
            var splits = new List<(string, AddedToken?)>();
            int startOffset = 0, scan = 0;
            while (Next(s, scan) is { } m)
            {
                scan = m.End;
                int start = m.Start, stop = m.End;
                var token = m.Token;
                if (token.SingleWord)
                {
                    bool startSpace = start == 0 || !EndsWithWordChar(s, start);
                    bool stopSpace = stop == s.Length || !StartsWithWordChar(s, stop);
                    if (!startSpace || !stopSpace) continue;
                }
                if (token.LStrip)
                {
                    int newStart = start;
                    while (newStart > 0 && PrevRune(s, newStart, out var r, out int len) && Rune.IsWhiteSpace(r)) newStart -= len;
                    start = Math.Max(newStart, startOffset);
                }
                if (token.RStrip)
                    while (stop < s.Length && Rune.DecodeFromUtf16(s.AsSpan(stop), out var r, out int len) == System.Buffers.OperationStatus.Done && Rune.IsWhiteSpace(r))
                        stop += len;
                if (startOffset < start) splits.Add((s[startOffset..start], null));
                splits.Add((s[start..Math.Max(start, stop)], token));
                startOffset = stop;
            }
            if (startOffset < s.Length) splits.Add((s[startOffset..], null));
            return splits;
        }

        private static bool PrevRune(string s, int end, out Rune rune, out int length) =>
            Rune.DecodeLastFromUtf16(s.AsSpan(0, end), out rune, out length) == System.Buffers.OperationStatus.Done;

        private static bool EndsWithWordChar(string s, int end) => PrevRune(s, end, out var r, out _) && IsWordChar(r);

        private static bool StartsWithWordChar(string s, int start) =>
            Rune.DecodeFromUtf16(s.AsSpan(start), out var r, out _) == System.Buffers.OperationStatus.Done && IsWordChar(r);

        // the regex crate's Unicode \w: alphabetic, marks, decimal digits, connector punctuation, join controls
        private static bool IsWordChar(Rune r) =>
            Rune.IsLetterOrDigit(r) || r.Value is 0x200C or 0x200D
            || Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.NonSpacingMark
                or System.Globalization.UnicodeCategory.SpacingCombiningMark or System.Globalization.UnicodeCategory.EnclosingMark
                or System.Globalization.UnicodeCategory.ConnectorPunctuation or System.Globalization.UnicodeCategory.LetterNumber;
    }
}

/// <summary>
/// Collects a tokenizer folder's added tokens the way transformers (5.x, tokenizers backend) registers them:
/// <c>tokenizer.json</c> <c>added_tokens</c>, <c>tokenizer_config.json</c> <c>added_tokens_decoder</c>, and the
/// special-token entries (bos/eos/unk/sep/pad/cls/mask, additional_special_tokens) of tokenizer_config.json
/// and special_tokens_map.json. A special token given as a plain string is an AddedToken with
/// <c>special</c> true, <c>normalized</c> false and no strip/single-word flags; an object keeps its flags.
/// Ids: the explicit one where given, else the token's id in the model vocabulary, else the next free id.
/// </summary>
internal static class AddedTokenLoader
{
    public static readonly string[] SpecialKeys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    public static List<AddedToken> Load(string dir, ClipTokenizerConfig config, Func<string, long?> vocabId, long vocabSize,
        IEnumerable<(string Content, AddedToken? Template)>? defaults = null)
    {
        var tokens = new List<AddedToken>();
        var byContent = new Dictionary<string, int>(StringComparer.Ordinal);
        long nextId = vocabSize;

        void Add(AddedToken t, bool overwrite)
        {
            if (byContent.TryGetValue(t.Content, out var at))
            {
                if (overwrite) tokens[at] = t with { Id = tokens[at].Id };
                return;
            }
            byContent[t.Content] = tokens.Count;
            tokens.Add(t);
            nextId = Math.Max(nextId, t.Id + 1);
        }

        long IdFor(string content, long? explicitId) =>
            explicitId ?? vocabId(content) ?? nextId;

        // 1. tokenizer.json
        var tokenizerJson = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(tokenizerJson))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(tokenizerJson));
                if (doc.RootElement.TryGetProperty("added_tokens", out var arr) && arr.ValueKind == JsonValueKind.Array)
                    foreach (var e in arr.EnumerateArray())
                        if (Parse(e, null, out var t, tokenizerJson)) Add(t! with { Id = IdFor(t.Content, e.TryGetProperty("id", out var id) ? id.GetInt64() : null) }, false);
            }
            catch (JsonException e) { throw new InvalidDataException($"{tokenizerJson}: invalid JSON: {e.Message}", e); }
        }
        // 2. added_tokens_decoder, in id order; transformers 5 re-adds these to the backend, which gives each the
        // token's vocabulary id if it has one, else the next free id (the key is not used as the id)
        var decoder = new List<(long Key, JsonElement Value)>();
        foreach (var (key, e) in config.Objects("added_tokens_decoder"))
        {
            if (!long.TryParse(key, out var id)) throw new InvalidDataException($"{dir}/tokenizer_config.json: added_tokens_decoder key '{key}' is not an id");
            decoder.Add((id, e));
        }
        foreach (var (_, e) in decoder.OrderBy(d => d.Key))
            if (Parse(e, null, out var t, "tokenizer_config.json")) Add(t! with { Id = IdFor(t.Content, null) }, false);
        // 3. special tokens
        foreach (var key in SpecialKeys)
            if (config.TokenElement(key) is { } e && Parse(e, true, out var t, key))
                Add(t! with { Id = IdFor(t.Content, null) }, false);
        foreach (var e in config.TokenElements("additional_special_tokens").Concat(config.TokenElements("extra_special_tokens")))
            if (Parse(e, true, out var t, "additional_special_tokens"))
                Add(t! with { Id = IdFor(t.Content, null) }, false);
        if (defaults is not null)
            foreach (var (content, template) in defaults)
                Add((template ?? new AddedToken(content, 0, true, false, false, false, false)) with { Content = content, Id = IdFor(content, null) }, false);
        return tokens;
    }

    /// <summary>An AddedToken from a JSON string or object; <paramref name="specialDefault"/> for a plain string / missing "special".</summary>
    private static bool Parse(JsonElement e, bool? specialDefault, out AddedToken? token, string where)
    {
        token = null;
        if (e.ValueKind == JsonValueKind.String)
        {
            var s = e.GetString()!;
            if (s.Length == 0) return false;
            bool special = specialDefault ?? false;
            token = new AddedToken(s, 0, special, !special, false, false, false);
            return true;
        }
        if (e.ValueKind != JsonValueKind.Object) return false;
        if (!e.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{where}: added token without a \"content\" string");
        var content = c.GetString()!;
        if (content.Length == 0) return false;
        bool Flag(string name, bool fallback) =>
            e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;
        // a special-token entry (bos/eos/pad/...) is special whatever its "special" says, as transformers registers it
        bool isSpecial = specialDefault == true || Flag("special", false);
        token = new AddedToken(content, 0, isSpecial, Flag("normalized", !isSpecial), Flag("lstrip", false), Flag("rstrip", false), Flag("single_word", false));
        return true;
    }
}
