using Google.Protobuf;

namespace Elect.Text;

/// <summary>The parts of a SentencePiece <c>ModelProto</c> (sentencepiece_model.proto) a tokenizer needs.</summary>
internal sealed class SentencePieceModel
{
    public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

    public enum ModelType { Unigram = 1, Bpe = 2, Word = 3, Char = 4 }

    public sealed record Piece(string Text, float Score, PieceType Type);

    public List<Piece> Pieces { get; } = new();
    public ModelType Type { get; private set; } = ModelType.Unigram;
    public bool ByteFallback { get; private set; }
    public int UnkId { get; private set; }
    public int BosId { get; private set; } = 1;
    public int EosId { get; private set; } = 2;
    public int PadId { get; private set; } = -1;
    public string NormalizerName { get; private set; } = "";
    public byte[] PrecompiledCharsMap { get; private set; } = [];
    public bool AddDummyPrefix { get; private set; } = true;
    public bool RemoveExtraWhitespaces { get; private set; } = true;

    public static SentencePieceModel Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"SentencePiece model not found: {path}", path);
        try
        {
            return Parse(File.ReadAllBytes(path));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"{path}: not a valid SentencePiece model ({e.Message})", e);
        }
    }

    public static SentencePieceModel Parse(byte[] data)
    {
        var m = new SentencePieceModel();
        var input = new CodedInputStream(data);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (Field(tag))
            {
                case (1, WireFormat.WireType.LengthDelimited): m.Pieces.Add(ParsePiece(input.ReadBytes())); break;
                case (2, WireFormat.WireType.LengthDelimited): m.ParseTrainerSpec(input.ReadBytes()); break;
                case (3, WireFormat.WireType.LengthDelimited): m.ParseNormalizerSpec(input.ReadBytes()); break;
                default: input.SkipLastField(); break;
            }
        }
        if (m.Pieces.Count == 0) throw new InvalidDataException("SentencePiece model has no pieces");
        return m;
    }

    private static (int, WireFormat.WireType) Field(uint tag) => (WireFormat.GetTagFieldNumber(tag), WireFormat.GetTagWireType(tag));

    private static Piece ParsePiece(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        string text = "";
        float score = 0;
        var type = PieceType.Normal;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (Field(tag))
            {
                case (1, WireFormat.WireType.LengthDelimited): text = input.ReadString(); break;
                case (2, WireFormat.WireType.Fixed32): score = input.ReadFloat(); break;
                case (3, WireFormat.WireType.Varint): type = (PieceType)input.ReadEnum(); break;
                default: input.SkipLastField(); break;
            }
        }
        return new Piece(text, score, type);
    }

    private void ParseTrainerSpec(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (Field(tag))
            {
                case (3, WireFormat.WireType.Varint): Type = (ModelType)input.ReadEnum(); break;
                case (35, WireFormat.WireType.Varint): ByteFallback = input.ReadBool(); break;
                case (40, WireFormat.WireType.Varint): UnkId = input.ReadInt32(); break;
                case (41, WireFormat.WireType.Varint): BosId = input.ReadInt32(); break;
                case (42, WireFormat.WireType.Varint): EosId = input.ReadInt32(); break;
                case (43, WireFormat.WireType.Varint): PadId = input.ReadInt32(); break;
                default: input.SkipLastField(); break;
            }
        }
    }

    private void ParseNormalizerSpec(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (Field(tag))
            {
                case (1, WireFormat.WireType.LengthDelimited): NormalizerName = input.ReadString(); break;
                case (2, WireFormat.WireType.LengthDelimited): PrecompiledCharsMap = input.ReadBytes().ToByteArray(); break;
                case (3, WireFormat.WireType.Varint): AddDummyPrefix = input.ReadBool(); break;
                case (4, WireFormat.WireType.Varint): RemoveExtraWhitespaces = input.ReadBool(); break;
                default: input.SkipLastField(); break;
            }
        }
    }
}
