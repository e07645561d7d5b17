using Elect.Pipelines.InstructPix2Pix;
using static TorchSharp.torch;

namespace Elect.Pipelines.UltraEdit;

/// <summary>UltraEdit's conditioning: InstructPix2Pix's branches and guidance, plus the pooled prompt embeddings.</summary>
public sealed class UltraEditConditioning : InstructPix2PixConditioning
{
    private readonly int _pooled;

    /// <param name="imageLatents">Image (and mask) latents [1, C_img, h, w] (model dtype).</param>
    /// <param name="embeds">Prompt embeddings [1, 154, D] of the instruction and of the empty prompt.</param>
    /// <param name="pooled">Pooled embeddings [1, P] of the instruction and of the empty prompt.</param>
    public UltraEditConditioning(Tensor imageLatents, (Tensor Instruction, Tensor Empty) embeds, (Tensor Instruction, Tensor Empty) pooled)
        : base(imageLatents, embeds.Instruction, embeds.Empty) => _pooled = AddPrompt(pooled.Instruction, pooled.Empty);

    /// <summary>The pooled embeddings of n candidates' branch batch [3n, P].</summary>
    public Tensor PooledFor(long n) => PromptFor(_pooled, n);
}
