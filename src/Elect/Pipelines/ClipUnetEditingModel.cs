using Elect.Imaging;
using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Unets;
using Elect.Text;
using static TorchSharp.torch;

namespace Elect.Pipelines;

/// <summary>
/// The part the SD 1.x UNet families (InstructPix2Pix / MagicBrush, InstructDiffusion) share: one CLIP text
/// encoder whose last hidden states condition a UNet that reads the noisy and the image latents concatenated.
/// The family gives the conditioning (branch layout, guidance) through <see cref="PrepareWithEmbeddings"/>.
/// </summary>
public abstract class ClipUnetEditingModel : VaeEditingModel
{
    protected ClipUnetEditingModel(ClipTokenizer? tokenizer, ClipTextModel? textEncoder, UNet2DConditionModel unet, AutoencoderKL vae,
                                   Device device, ScalarType dtype) : base(vae, device, dtype)
    {
        Tokenizer = tokenizer;
        TextEncoder = textEncoder;
        Unet = unet;
    }

    /// <summary>Null for a model built without text encoding (benchmarks feed embeddings directly).</summary>
    public ClipTokenizer? Tokenizer { get; }
    public ClipTextModel? TextEncoder { get; }
    public UNet2DConditionModel Unet { get; }

    public override int DownsampleFactor => Vae.DownsampleFactor;

    public override EditCondition Prepare(RgbImage image, string instruction, RgbImage? mask = null)
    {
        if (mask is not null) throw new NotSupportedException($"{Name} takes no mask image");
        using var noGrad = no_grad();
        var (text, empty) = EncodeClipPrompts(Tokenizer, TextEncoder, instruction);
        using (text)
        using (empty)
            return PrepareWithEmbeddings(image, text, empty);
    }

    /// <summary>
    /// The last hidden states [1, L, D] of the instruction and of the empty prompt, from one CLIP text encoder
    /// (the SD 1.x families' prompt conditioning). Call under <c>no_grad</c>.
    /// </summary>
    protected (Tensor Instruction, Tensor Empty) EncodeClipPrompts(ClipTokenizer? tokenizer, ClipTextModel? textEncoder, string instruction)
    {
        if (tokenizer is null || textEncoder is null) throw new InvalidOperationException("this model was built without a text encoder");
        using var ids = tokenizer.EncodeBatch([instruction, ""]);
        using var idsOnDevice = ids.to(Device);
        using var encoded = textEncoder.call(idsOnDevice);
        return (encoded.LastHiddenState[0..1], encoded.LastHiddenState[1..2]);
    }

    /// <summary>Conditioning from given prompt embeddings ([1, L, D] for the instruction and for the empty prompt).</summary>
    public abstract EditCondition PrepareWithEmbeddings(RgbImage image, Tensor text, Tensor empty);

    public override Tensor Forward(EditCondition condition, Tensor modelInput, Tensor timestep)
    {
        using var noGrad = no_grad();
        var c = (ThreeBranchConditioning)condition.Conditioning;
        return Unet.call(modelInput, timestep, c.HiddenStatesFor(modelInput.shape[0] / 3));
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        TextEncoder?.Dispose();
        Unet.Dispose();
        Vae.Dispose();
    }
}
