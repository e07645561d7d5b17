using System.Text;
using System.Text.RegularExpressions;
using TorchSharp;

namespace Elect.Text;

/// <summary>
/// T5's SentencePiece unigram tokenizer (spiece.model), producing fixed-length id rows
/// <c>[tokens..., &lt;/s&gt;, &lt;pad&gt;...]</c> as the SD3-family pipelines feed the T5 encoder.
/// </summary>
/// <remarks>
/// Reproduces transformers 5's T5Tokenizer (= T5TokenizerFast, backed by the <c>tokenizers</c> library):
/// added tokens (the special tokens <c>&lt;/s&gt;</c>, <c>&lt;unk&gt;</c>, <c>&lt;pad&gt;</c>, <c>&lt;extra_id_N&gt;</c>
/// and any other added token of the folder, with their flags) are split off the raw text by
/// <see cref="AddedVocabulary"/> (leftmost-longest, as <c>tokenizers</c> does); each remaining segment goes
/// through the model's precompiled normaliser (e.g. nmt_nfkc), is split on whitespace, each word gets a
/// leading U+2581 (and splits again before every U+2581 it contains), and each piece is segmented by
/// the unigram model; <c>&lt;/s&gt;</c> is appended. Sentinel <c>&lt;extra_id_N&gt;</c> has id
/// <c>pieces + extra_ids - 1 - N</c>. Byte fallback is off, as in transformers' T5Tokenizer.
/// <para>
/// Not built on Microsoft.ML.Tokenizers: its SentencePieceTokenizer (2.0.1) throws
/// IndexOutOfRangeException while constructing the unigram model for models without a BOS piece
/// (<c>bos_id = -1</c>, as in every T5 spiece.model); its unigram model is internal, and its public
/// SentencePieceNormalizer takes no precompiled charsmap, so neither part can be used on its own.
/// </para>
/// </remarks>
public sealed class T5Tokenizer
{
    public const char SpaceSymbol = '\u2581';
    private static readonly Regex ExtraIdPattern = new(@"^<extra_id_(\d+)>$", RegexOptions.CultureInvariant);

    private readonly UnigramModel _model;
    private readonly SentencePieceCharsMap? _charsMap;
    private readonly AddedVocabulary _added;

    public long PadId { get; }
    public long EosId { get; }
    public long UnkId { get; }
    /// <summary>Number of ids: model pieces plus sentinel extra ids.</summary>
    public int VocabSize { get; }
    /// <summary>Default row length of <see cref="Encode"/> / <see cref="EncodeBatch"/> in the diffusion pipelines.</summary>
    public const int DefaultMaxLength = 77;

    /// <summary>The tokens split out of the text before the model (special tokens included).</summary>
    public IReadOnlyList<AddedToken> AddedTokens => _added.Tokens;

    private T5Tokenizer(UnigramModel model, SentencePieceCharsMap? charsMap, List<AddedToken> added, long pad, long eos, long unk, int vocabSize)
    {
        _model = model;
        _charsMap = charsMap;
        _added = new AddedVocabulary(added, charsMap is null ? null : charsMap.Normalize);
        PadId = pad;
        EosId = eos;
        UnkId = unk;
        VocabSize = vocabSize;
    }

    /// <summary>Loads a transformers T5Tokenizer folder: spiece.model and (optional) tokenizer_config.json / special_tokens_map.json.</summary>
    public static T5Tokenizer FromFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"T5 tokenizer folder not found: {dir}");
        var modelPath = Path.Combine(dir, "spiece.model");
        if (!File.Exists(modelPath)) throw new FileNotFoundException($"T5 tokenizer: missing spiece.model in {dir}", modelPath);
        var proto = SentencePieceModel.Load(modelPath);
        if (proto.Type != SentencePieceModel.ModelType.Unigram)
            throw new NotSupportedException($"{modelPath}: SentencePiece model type {proto.Type} is not supported (T5 uses a unigram model)");

        var config = ClipTokenizerConfig.Read(dir);
        var pieceIds = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < proto.Pieces.Count; i++) pieceIds[proto.Pieces[i].Text] = i;

        int extraIds = config.Int("extra_ids") ?? 100;
        if (extraIds < 0) throw new InvalidDataException($"{dir}: extra_ids must not be negative");
        int vocabSize = proto.Pieces.Count + extraIds;

        long Lookup(string token, string role) =>
            pieceIds.TryGetValue(token, out var id) ? id : throw new InvalidDataException($"T5 tokenizer: {role} '{token}' is not a piece of {modelPath}");

        int unkDefault = proto.UnkId >= 0 && proto.UnkId < proto.Pieces.Count ? proto.UnkId : -1;
        string unkToken = config.Token("unk_token") ?? (unkDefault >= 0 ? proto.Pieces[unkDefault].Text : "<unk>");
        string eosToken = config.Token("eos_token") ?? "</s>";
        string padToken = config.Token("pad_token") ?? "<pad>";
        long unk = Lookup(unkToken, "unk_token"), eos = Lookup(eosToken, "eos_token"), pad = Lookup(padToken, "pad_token");

        // transformers' T5Tokenizer: the special tokens, and additional_special_tokens (which must hold the
        // <extra_id_N> sentinels, else all extra_ids of them are appended)
        var extras = config.TokenElements("additional_special_tokens")
            .Any(e => (e.ValueKind == System.Text.Json.JsonValueKind.String ? e.GetString() : e.TryGetProperty("content", out var c) ? c.GetString() : null)?.Contains("<extra_id_") == true)
            ? []
            : Enumerable.Range(0, extraIds).Select(n => ($"<extra_id_{n}>", (AddedToken?)null));
        var defaults = new[] { eosToken, unkToken, padToken }.Select(t => (t, (AddedToken?)null)).Concat(extras);
        long? VocabId(string token)
        {
            if (pieceIds.TryGetValue(token, out var id)) return id;
            var m = ExtraIdPattern.Match(token);
            return m.Success && int.TryParse(m.Groups[1].Value, out var k) && k < extraIds ? proto.Pieces.Count + extraIds - 1 - k : null;
        }
        var added = AddedTokenLoader.Load(dir, config, VocabId, vocabSize, defaults);

        var vocab = proto.Pieces.Select(p => (p.Text, (double)p.Score)).ToList();
        for (int n = extraIds - 1; n >= 0; n--) vocab.Add(($"<extra_id_{n}>", 0.0));
        var model = new UnigramModel(vocab, (int)unk);
        var charsMap = proto.PrecompiledCharsMap.Length > 0 ? SentencePieceCharsMap.Parse(proto.PrecompiledCharsMap) : null;
        return new T5Tokenizer(model, charsMap, added, pad, eos, unk, vocabSize);
    }

    /// <summary>The token ids of <paramref name="text"/> without <c>&lt;/s&gt;</c>, truncation or padding.</summary>
    public List<long> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<long>();
        foreach (var (piece, token) in _added.Split(text))
        {
            if (token is not null) ids.Add(token.Id);
            else EncodeNormalized(piece, ids);
        }
        return ids;
    }

    private void EncodeNormalized(string text, List<long> ids)
    {
        var piece = new StringBuilder();
        int i = 0;
        while (i < text.Length)
        {
            // whitespace split (Unicode White_Space)
            if (IsSpaceAt(text, i, out int wl)) { i += wl; continue; }
            int j = i;
            while (j < text.Length && !IsSpaceAt(text, j, out _)) j++;
            var word = text.AsSpan(i, j - i);
            i = j;
            // metaspace: prepend U+2581 unless present, then split before every U+2581
            piece.Clear();
            if (word[0] != SpaceSymbol) piece.Append(SpaceSymbol);
            foreach (char c in word)
            {
                if (c == SpaceSymbol && piece.Length > 0)
                {
                    _model.Encode(piece.ToString(), ids);
                    piece.Clear();
                }
                piece.Append(c);
            }
            if (piece.Length > 0) _model.Encode(piece.ToString(), ids);
        }
    }

    private static bool IsSpaceAt(string s, int i, out int length)
    {
        length = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
        return length == 1 && char.IsWhiteSpace(s[i]); // no White_Space code point lies outside the BMP
    }

    /// <summary>
    /// <c>[tokens..., &lt;/s&gt;, &lt;pad&gt;...]</c>, exactly <paramref name="maxLength"/> ids; tokens are
    /// truncated so <c>&lt;/s&gt;</c> stays last.
    /// </summary>
    public long[] Encode(string text, int maxLength = DefaultMaxLength)
    {
        if (maxLength < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), "maxLength must be at least 1");
        var tokens = Tokenize(text);
        var row = new long[maxLength];
        Array.Fill(row, PadId);
        int n = Math.Min(tokens.Count, maxLength - 1);
        for (int i = 0; i < n; i++) row[i] = tokens[i];
        row[n] = EosId;
        return row;
    }

    /// <summary>int64 [B, maxLength] on the CPU.</summary>
    public torch.Tensor EncodeBatch(IReadOnlyList<string> texts, int maxLength = DefaultMaxLength)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var data = new long[texts.Count * maxLength];
        for (int b = 0; b < texts.Count; b++) Encode(texts[b], maxLength).CopyTo(data, b * maxLength);
        return torch.tensor(data, [texts.Count, maxLength], torch.int64);
    }
}
